"""Reading an image upload: raw body (application/dicom, image/png, image/jpeg) or multipart ``file``."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from radclip.service.problems import ProblemError

RAW_TYPES = ("application/dicom", "image/png", "image/jpeg", "application/octet-stream")


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
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit_bytes:
            raise _too_large(limit_bytes)
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=limit_bytes)
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
