"""A DICOMweb client: QIDO-RS to list studies and instances, WADO-RS to fetch one instance's DICOM file.

Shared by the PACS sync (:mod:`radclip.integrations.dicomweb_sync`) and the DICOMweb corpus source
(:mod:`radclip.integrations.dicomweb_corpus`). Every server failure (unreachable, HTTP error, an answer
that is not what PS3.18 says) is a :class:`DicomWebUnavailable` naming the server, never a crash.
"""

from __future__ import annotations

from typing import Any

import httpx

TAG_STUDY_UID, TAG_SERIES_UID, TAG_SOP_UID, TAG_N_INSTANCES = "0020000D", "0020000E", "00080018", "00201208"
REFUSED = frozenset({401, 403, 407, 408, 429})  # the server refuses this client, not one instance


class DicomWebUnavailable(RuntimeError):
    """The DICOMweb server could not be reached or answered with an error; run the sync again later."""

    def __init__(self, message: str, http_status: int | None = None, reached: bool = False) -> None:
        super().__init__(message)
        # the server's HTTP status; None when it was not reached or its answer was malformed. Not named
        # ``status``: that attribute means "the status radclip answers with" (service.problems, fuzz/)
        self.http_status = http_status
        self.reached = reached or http_status is not None  # False: no answer at all (connection, timeout)

    @property
    def server_down(self) -> bool:
        """True when every request would fail the same way, so it is not one instance's fault.

        Unreachable, a 5xx, or a refusal of the client rather than of the instance: 401/403/407
        (credentials), 408 (timeout), 429 (rate limit). False for a 404/410 (that instance is gone) and
        for a malformed answer about one instance (``reached``, no status).
        """
        if not self.reached:
            return True
        return self.http_status is not None and (self.http_status >= 500 or self.http_status in REFUSED)


def tag_value(item: dict[str, Any], tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON object, or None."""
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def _qido_page(r: httpx.Response, path: str) -> list[dict[str, Any]]:
    """A QIDO-RS answer checked against PS3.18 F.2: an array of objects, each tag an object with a list ``Value``.

    Anything else (found by fuzz/fuzz_dicomweb.py: not JSON, a bare number, a tag that is a string,
    a count that is not an integer) is the server's fault, so it is DicomWebUnavailable, not a crash.
    """

    def bad(why: str) -> DicomWebUnavailable:
        return DicomWebUnavailable(
            f"QIDO-RS {path} answered {why}; expected a DICOM JSON array (PS3.18 F.2); check the server", reached=True
        )

    try:
        page = r.json()
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad(f"with a body that is not JSON ({type(exc).__name__})") from None
    if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
        raise bad(f"with a JSON {type(page).__name__} that is not an array of objects")
    for item in page:
        for tag, element in item.items():
            if not isinstance(element, dict) or not isinstance(element.get("Value", []), list):
                raise bad(f"with tag {str(tag)[:16]!r} that is not an object with a list Value")
        count = tag_value(item, TAG_N_INSTANCES)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise bad(f"with NumberOfStudyRelatedInstances {str(count)[:32]!r}, not a count")
    return page


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` WADO-RS answer (each an ``application/dicom`` file)."""
    boundary = next(
        (
            p.split("=", 1)[1].strip().strip('"')
            for p in content_type.split(";")
            if p.strip().lower().startswith("boundary=")
        ),
        None,
    )
    if not boundary:
        raise DicomWebUnavailable(f"WADO-RS answer is not multipart (Content-Type {content_type!r})", reached=True)
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if sep:
            parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


class DicomWebClient:
    """QIDO-RS / WADO-RS against one server (``base_url``: the DICOMweb root, e.g. ``http://pacs:8042/dicom-web``)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, page_size: int = 100,
                 transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        self.base = base_url.rstrip("/")
        self.page_size = page_size  # QIDO-RS limit per page
        # a refused or reset connection is retried (3 times) before it counts as the server being down
        self._http = httpx.Client(timeout=timeout_s, transport=transport or httpx.HTTPTransport(retries=3))

    def close(self) -> None:
        self._http.close()

    # -- HTTP -----------------------------------------------------------------------------
    def _get(self, path: str, accept: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            r = self._http.get(f"{self.base}/{path}", params=params, headers={"Accept": accept})
        except httpx.TransportError as exc:
            raise DicomWebUnavailable(
                f"DICOMweb server {self.base} unreachable ({type(exc).__name__}: {exc}); retry later"
            ) from None
        if r.status_code == 204:
            return r
        if r.status_code >= 400:
            raise DicomWebUnavailable(
                f"DICOMweb GET {path} answered HTTP {r.status_code}: {r.text[:200]}",
                http_status=r.status_code,
            )
        return r

    def _qido(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            r = self._get(
                path, "application/dicom+json", {**params, "limit": self.page_size, "offset": offset}
            )
            page = _qido_page(r, path) if r.status_code != 204 and r.content else []
            if offset and page and page == out[offset - len(page) : offset]:  # ignores offset: the same page again
                raise DicomWebUnavailable(
                    f"QIDO-RS {path} answered the same {len(page)} rows for offset {offset}: the server ignores "
                    f"offset; raise its result limit above the study count or page size {self.page_size}",
                    reached=True,
                )
            out.extend(page)
            if len(page) < self.page_size:
                return out
            offset += len(page)

    def study_rows(self, include: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The QIDO-RS study objects of every study on the server (DICOM JSON), with the ``include`` tags."""
        return self._qido("studies", {"includefield": [TAG_N_INSTANCES, *include]})

    def find_studies(self) -> list[tuple[str, int | None]]:
        """(StudyInstanceUID, number of instances or None) of every study on the server (QIDO-RS)."""
        rows = self.study_rows()
        return [
            (str(tag_value(r, TAG_STUDY_UID)), tag_value(r, TAG_N_INSTANCES))
            for r in rows
            if tag_value(r, TAG_STUDY_UID)
        ]

    def instance_rows(self, study_uid: str, include: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The QIDO-RS instance objects of a study (DICOM JSON), with the ``include`` tags asked for."""
        return self._qido(
            f"studies/{study_uid}/instances", {"includefield": list(include)} if include else {}
        )

    def find_instances(self, study_uid: str) -> list[tuple[str, str]]:
        """(SeriesInstanceUID, SOPInstanceUID) of every instance of a study (QIDO-RS)."""
        rows = self.instance_rows(study_uid)
        return [
            (str(tag_value(r, TAG_SERIES_UID)), str(tag_value(r, TAG_SOP_UID)))
            for r in rows
            if tag_value(r, TAG_SOP_UID)
        ]

    def fetch_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The DICOM file of one instance (WADO-RS, ``multipart/related; type=application/dicom``)."""
        r = self._get(
            f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
            'multipart/related; type="application/dicom"',
        )
        parts = split_multipart(r.content, r.headers.get("content-type", ""))
        if len(parts) != 1:
            raise DicomWebUnavailable(
                f"WADO-RS for SOP Instance UID {sop_uid} returned {len(parts)} parts, expected 1", reached=True
            )
        return parts[0]
