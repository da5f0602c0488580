"""Fuzz the upload reader of ``/screen`` (raw bodies and multipart/form-data): an Upload or a 4xx ProblemError."""

from __future__ import annotations

import asyncio

import harness_contract as contract
from starlette.requests import Request

from radclip.service.uploads import Upload, read_image_upload

LIMIT_BYTES = 1_000_000  # the image limit; multipart may add MULTIPART_OVERHEAD_BYTES for fields
_LOOP = asyncio.new_event_loop()


def _split(data: bytes) -> tuple[bytes, list[bytes]]:
    """First line: the Content-Type header; the rest: the body, cut into chunks at 0xFF bytes (chunked transfer)."""
    ctype, _, body = data.partition(b"\n")
    return ctype.strip(), body.split(b"\xff") if body else [b""]


def _request(ctype: bytes, chunks: list[bytes]) -> Request:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/api/v1/screen", "query_string": b"",
             "headers": [(b"content-type", ctype)]}  # fmt: skip
    return Request(scope, receive)


def _target(data: bytes) -> Upload:
    ctype, chunks = _split(data)
    upload = _LOOP.run_until_complete(read_image_upload(_request(ctype, chunks), LIMIT_BYTES))
    if not isinstance(upload, Upload) or len(upload.data) > LIMIT_BYTES:
        raise contract.Finding(
            f"read_image_upload returned {type(upload).__name__} past the limit or of the wrong type"
        )
    return upload


def one_input(data: bytes) -> None:
    contract.check(_target, data, contract.input_errors())


if __name__ == "__main__":
    contract.run(one_input)
