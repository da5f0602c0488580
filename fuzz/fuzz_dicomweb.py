"""Fuzz the DICOMweb answers ``pacs sync`` reads (QIDO-RS JSON, WADO-RS multipart): a list, or DicomWebUnavailable."""

from __future__ import annotations

import tempfile
from pathlib import Path

import harness_contract as contract
import httpx

from radclip.integrations.dicomweb_sync import DicomWebSync, DicomWebUnavailable

_STATE = Path(tempfile.mkdtemp(prefix="radclip-fuzz-dicomweb-")) / "sync.db"
_BODY = {"content": b"", "ctype": "application/dicom+json"}


def _answer(request: httpx.Request) -> httpx.Response:
    # Bytes, as on the wire: a header that is not ASCII reaches the parser latin-1 decoded, as from a real server.
    return httpx.Response(
        200, content=_BODY["content"], headers=[(b"content-type", _BODY["ctype"].encode("latin-1"))]
    )


# One client for the whole run: the state database is opened once, as in a long `pacs sync --watch`.
_SYNC = DicomWebSync("http://pacs.invalid/dicom-web", ingestor=None, state_path=_STATE,  # type: ignore[arg-type]
                     page_size=1_000_000, transport=httpx.MockTransport(_answer))  # fmt: skip


def _target(data: bytes) -> object:
    # First byte: which answer this is. QIDO studies, QIDO instances, or a WADO-RS multipart instance.
    which, body = (data[0] % 3 if data else 0), data[1:]
    if which == 2:
        ctype, _, payload = body.partition(b"\n")
        _BODY.update(content=payload, ctype=ctype.decode("latin-1"))
        return _SYNC.fetch_instance("1.2", "1.2.3", "1.2.3.4")
    _BODY.update(content=body, ctype="application/dicom+json")
    rows = _SYNC.find_studies() if which == 0 else _SYNC.find_instances("1.2.3")
    if not all(isinstance(row[0], str) for row in rows):
        raise contract.Finding(f"a UID that is not a string: {rows[:3]}")
    if which == 0 and not all(n is None or (isinstance(n, int) and n >= 0) for _, n in rows):
        raise contract.Finding(
            f"an instance count that is not a count (pacs sync calls int() on it): {rows[:3]}"
        )
    return rows


def one_input(data: bytes) -> None:
    contract.check(_target, data, (DicomWebUnavailable,))


if __name__ == "__main__":
    contract.run(one_input)
