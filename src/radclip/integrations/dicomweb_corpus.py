"""A DICOMweb server as a retrieval corpus: its instances as StudyRecords (QIDO-RS), each image fetched by WADO-RS.

``radclip index dicomweb+http://HOST:PORT/dicom-web`` lists every study and instance once (the driver)
and gives each instance a URL of its own as ``image_path``
(``dicomweb+http://…/studies/S/series/R/instances/I``). :func:`dicomweb_load_fn` is the loader for
such paths, in the single-process build and in each Ray actor alike: it fetches the instance (one
HTTP client per process and server) and decodes it through :mod:`radclip.io` into the contract
tensor, as a DICOM file on disk would be. An instance that cannot be fetched (4xx) or decoded is
quarantined with the reason, like an unreadable file; a server that is down stops the build instead
(:class:`~radclip.engine.study_index.ImageSourceDown`), so a rerun fetches those images rather than
finding them quarantined in a finished shard.

Records: ``study_id`` = StudyInstanceUID, ``instance_id`` = SOPInstanceUID (the image key, and what
stands for the content in the snapshot and shard digests: no file sizes, no extra requests),
``patient_id`` = the keyed pseudonym of PatientID (never the MRN), ``study_date`` and ``view``
(ViewPosition) where the server returns them. Listing order is sorted by UID, so reruns cut the
same shards.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import httpx
import numpy as np

from radclip.engine.corpus import Pseudonymise, default_pseudonymise
from radclip.engine.study_index import ImageSourceDown, StudyRecord, default_load_fn
from radclip.integrations.dicomweb_client import (
    TAG_SERIES_UID,
    TAG_SOP_UID,
    TAG_STUDY_UID,
    DicomWebClient,
    DicomWebUnavailable,
    tag_value,
)

SCHEME_PREFIX = "dicomweb+"
TAG_PATIENT_ID, TAG_STUDY_DATE, TAG_VIEW, TAG_MODALITY = "00100020", "00080020", "00185101", "00080060"
RADIOGRAPH_MODALITIES = ("CR", "DX")  # computed and digital radiography: what a chest X-ray archive holds
_INSTANCE = re.compile(r"^dicomweb\+((?i:https?)://.+)/studies/([^/]+)/series/([^/]+)/instances/([^/]+)$")
log = logging.getLogger(__name__)
_CLIENTS: dict[str, DicomWebClient] = {}  # per process: one pooled HTTP client per server
_CLIENTS_LOCK = threading.Lock()
USAGE = "write the server's DICOMweb root with the dicomweb+ prefix, e.g. dicomweb+http://127.0.0.1:8042/dicom-web"


def is_dicomweb_source(source: str) -> bool:
    """True for ``dicomweb+http(s)://…`` (what ``radclip index`` treats as a DICOMweb server)."""
    return str(source).lower().startswith(SCHEME_PREFIX)


def parse_source(source: str) -> str:
    """The server's DICOMweb root (``http://HOST:PORT/dicom-web``) from ``dicomweb+http://…``; ValueError naming the fix."""
    if not is_dicomweb_source(source):
        raise ValueError(f"{source!r} is not a DICOMweb source; {USAGE}")
    base = str(source)[len(SCHEME_PREFIX) :].rstrip("/")
    try:
        url = httpx.URL(base)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValueError(f"{source!r} is not a valid URL ({exc}); {USAGE}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{source!r} needs an http or https URL with a host; {USAGE}")
    if url.userinfo:
        raise ValueError("credentials in the DICOMweb URL are refused: they would be stored in every indexed "
                         "study's path and printed in logs. radclip index does not authenticate to DICOMweb yet; "
                         "index from a server (or a proxy in front of it) the indexing host reaches without "
                         "credentials")  # fmt: skip
    return str(url).rstrip("/")  # scheme and host lower-cased, as the instance paths are matched


def instance_path(base: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """The ``image_path`` of one instance: its WADO-RS URL with the ``dicomweb+`` prefix."""
    return f"{SCHEME_PREFIX}{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def _client(base: str) -> DicomWebClient:
    with _CLIENTS_LOCK:
        if base not in _CLIENTS:
            _CLIENTS[base] = DicomWebClient(base)
        return _CLIENTS[base]


def fetch_instance(path: str) -> bytes:
    """The DICOM file behind an :func:`instance_path` (WADO-RS).

    A 404/410 or a malformed answer for the instance raises DicomWebUnavailable: that image is
    quarantined. An unreachable server, a 5xx or a refusal of the client (401/403/407/408/429, see
    ``DicomWebUnavailable.server_down``) raises ImageSourceDown: the build stops and a rerun resumes.
    """
    match = _INSTANCE.match(path)
    if match is None:
        raise ValueError(
            f"{path!r} is not a DICOMweb instance path (dicomweb+http://…/studies/S/series/R/instances/I)"
        )
    base, study_uid, series_uid, sop_uid = match.groups()
    try:
        return _client(base).fetch_instance(study_uid, series_uid, sop_uid)
    except DicomWebUnavailable as exc:
        if exc.server_down:  # not this instance's fault: stop the build, keep what is done, rerun later
            raise ImageSourceDown(
                f"{exc}; the build stopped, rerun radclip index once {base} is back"
            ) from None
        raise


def dicomweb_load_fn(size: int = 224) -> Callable[[str], np.ndarray]:
    """Image path -> contract tensor (1, S, S): WADO-RS fetch + ``radclip.io`` decode; other paths as files."""
    from_file = default_load_fn(size)

    def load(path: str) -> np.ndarray:
        if not is_dicomweb_source(path):
            return from_file(path)
        from radclip.io.contract import to_contract_tensor
        from radclip.io.loader import load_image

        sop_uid = path.rsplit("/", 1)[-1]
        return to_contract_tensor(
            load_image(fetch_instance(path), filename_hint=f"instance {sop_uid}").pixels, size
        )

    return load


def records_from_dicomweb(source: str, pseudonymise: Pseudonymise | None = None, client: DicomWebClient | None = None,
                          modalities: tuple[str, ...] | None = RADIOGRAPH_MODALITIES) -> list[StudyRecord]:  # fmt: skip
    """Every radiograph instance on the server as a record (QIDO-RS; no image is fetched). Errors name the fix.

    ``modalities``: instances whose Modality is another one (CT, MR, SR, PR, KO, ...) are not listed,
    so a PACS's other objects are never downloaded; an instance without Modality is kept. None: all.
    """
    base = parse_source(source)
    own = client is None
    client = client or DicomWebClient(base)
    pseudonym = pseudonymise or default_pseudonymise()
    records: list[StudyRecord] = []
    skipped = 0
    source_name = f"dicomweb:{httpx.URL(base).netloc.decode()}"[:64]  # index_items.source is 64 characters
    try:
        studies = client.study_rows(include=(TAG_PATIENT_ID, TAG_STUDY_DATE))
        for study in sorted(studies, key=lambda s: str(tag_value(s, TAG_STUDY_UID) or "")):
            study_uid = tag_value(study, TAG_STUDY_UID)
            if not study_uid:
                continue
            rows = client.instance_rows(str(study_uid), include=(TAG_VIEW, TAG_MODALITY))
            wanted = [r for r in rows if modalities is None or tag_value(r, TAG_MODALITY) in (None, "", *modalities)]
            skipped += len(rows) - len(wanted)
            keyed = sorted((str(tag_value(r, TAG_SERIES_UID)), str(tag_value(r, TAG_SOP_UID)), r)
                           for r in wanted if tag_value(r, TAG_SOP_UID) and tag_value(r, TAG_SERIES_UID))  # fmt: skip
            patient = tag_value(study, TAG_PATIENT_ID)
            for series_uid, sop_uid, row in keyed:
                records.append(StudyRecord(
                    study_id=str(study_uid), image_path=instance_path(base, str(study_uid), series_uid, sop_uid),
                    patient_id=pseudonym(str(patient)) if patient else None, view=_text(tag_value(row, TAG_VIEW)),
                    study_date=_text(tag_value(study, TAG_STUDY_DATE)), source=source_name,
                    instance_id=sop_uid))  # fmt: skip
    except DicomWebUnavailable as exc:
        raise DicomWebUnavailable(
            f"cannot list the studies of {base}: {exc}. Check that the server is running and that the URL is "
            "its DICOMweb root, e.g. dicomweb+http://127.0.0.1:8042/dicom-web",
            exc.http_status,
        ) from None
    finally:
        if own:
            client.close()
    if skipped:
        log.info("%s: %d instance(s) of other modalities than %s not listed", base, skipped, "/".join(modalities or ()))
    return records


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
