"""Reading request bodies within limits: image uploads (raw or multipart ``file``) and small JSON bodies.

Every limit is enforced while the body streams in, before anything is parsed: a chunked body with no
Content-Length is counted chunk by chunk and refused with 413 as soon as it passes the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip.service.problems import ProblemError, problem_response

RAW_TYPES = ("application/dicom", "image/png", "image/jpeg", "application/octet-stream")
# Multipart text fields (FHIR Patient / ImagingStudy JSON) and part headers, on top of the image limit.
MULTIPART_OVERHEAD_BYTES = 1_000_000
# Every other body (JSON: register-condition, retrieve) is read whole by the framework before any
# check; the largest valid one (32 prompts x 300 chars, 32 synonyms x 100) is under 20 KB.
JSON_BODY_LIMIT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)  # other multipart text fields (e.g. FHIR JSON)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413, "Upload too large", f"the upload is larger than the limit of {limit / 1e6:.0f} MB",
        "send a smaller image or raise RADCLIP_MAX_UPLOAD_MB", "upload-too-large",
    )


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image_upload(request: Request, limit_bytes: int) -> Upload:
    """Return the uploaded bytes or raise a 4xx :class:`ProblemError` saying what to send instead."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        # Read (bounded) before parsing: starlette's parser would spool a chunked body of any size first.
        request._body = await _read_limited(request, limit_bytes + MULTIPART_OVERHEAD_BYTES)  # form() reads this
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=MULTIPART_OVERHEAD_BYTES)
        except Exception as exc:  # starlette raises several types for malformed multipart bodies
            raise ProblemError(400, "Malformed multipart body", str(exc) or "the multipart body could not be parsed",
                               "send multipart/form-data with one part named 'file'", "malformed-multipart") from None
        part = form.get("file")
        if part is None or isinstance(part, str):
            raise ProblemError(400, "Missing file", "the multipart body has no file part named 'file'",
                               "send the image as a form part named 'file'", "missing-file")
        data = await part.read()
        if len(data) > limit_bytes:
            raise _too_large(limit_bytes)
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        return Upload(data, part.filename, part.content_type or "application/octet-stream", fields)
    if ctype not in RAW_TYPES:
        raise ProblemError(
            415, "Unsupported content type", f"content type {ctype or '(none)'!r} is not an image upload",
            f"send the image as the raw body with Content-Type one of {', '.join(RAW_TYPES)}, or as multipart/form-data field 'file'",
            "unsupported-content-type",
        )
    data = await _read_limited(request, limit_bytes)
    if not data:
        raise ProblemError(400, "Empty upload", "the request body is empty", "send the image bytes as the request body", "empty-upload")
    return Upload(data, None, ctype)


class BodyLimit:
    """Count every request body as it streams and refuse it (413) once it passes its limit.

    Image uploads (raw image types, multipart) may reach the upload limit plus multipart overhead;
    any other body (JSON) only ``json_limit``: FastAPI reads and parses a JSON body whole before
    running dependencies or the route, so without this a 200 MB body was read and parsed first.
    """

    def __init__(self, app: ASGIApp, json_limit: int = JSON_BODY_LIMIT_BYTES) -> None:
        self.app, self.json_limit = app, json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _upload_limit(scope) if _is_upload(scope) else self.json_limit
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(limit, scope, receive, send)
            return
        seen = [0]

        async def counted() -> Message:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                from fastapi import (
                    HTTPException,  # FastAPI re-raises its own type from body parsing (not a 400)
                )

                raise HTTPException(413, f"the request body is larger than the limit of {limit:,} bytes")
            return message

        await self.app(scope, counted, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _is_upload(scope: Scope) -> bool:
    ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
    return ctype in RAW_TYPES or ctype == "multipart/form-data"


def _upload_limit(scope: Scope) -> int:
    app = scope.get("app")
    state = getattr(getattr(app, "state", None), "radclip", None)
    mb = float(state.settings.max_upload_mb) if state is not None else 2048.0
    return int(mb * 1e6) + MULTIPART_OVERHEAD_BYTES


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(413, "Request body too large", f"the request body is larger than the limit of {limit:,} bytes",
                                "send a smaller body; images go as the raw body or a multipart 'file' part", "body-too-large")  # fmt: skip
    await response(scope, receive, send)
