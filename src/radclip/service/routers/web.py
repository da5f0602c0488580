"""The reading-room web UI: the static page at ``/`` and the few endpoints only the page needs.

Static files come from ``radclip/web/`` (no build step, nothing from a CDN). The endpoints:

- ``GET /api/v1/studies?q=&limit=&offset=``: the studies in the open case index (for "pick from corpus").
- ``GET /api/v1/studies/{study_id}/file``: the study's original image file (PNG, JPEG or DICOM).
- ``GET /api/v1/studies/{study_id}/thumbnail?size=``: an 8-bit PNG thumbnail for result grids.
- ``POST /api/v1/pixels`` (image body): the decoded pixels as little-endian uint16 (0..65535), at most
  ``max_side`` on the long side, so the browser can window/level DICOM and PNG alike.
- ``POST /api/v1/cam?label=`` (image body): the raw class activation map of one finding as an 8-bit
  grayscale PNG (contract space: the centre square of the image), for an overlay drawn in the browser.

Files are served only for paths recorded in the index database, looked up by study id; a path sent
by the client is never opened.
"""

from __future__ import annotations

import base64
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from radclip.service.auth import may_see_phi
from radclip.service.deps import StateDep
from radclip.service.imaging import decode_upload
from radclip.service.problems import ProblemError
from radclip.service.readiness import safe_index, safe_reason, warming_headers
from radclip.service.routers.triage import IMAGE_BODY, require_triage
from radclip.service.uploads import read_image_upload

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
_MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}  # fmt: skip
_FILE_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".dcm": "application/dicom", ".dicom": "application/dicom"}
_NO_CACHE = {"Cache-Control": "no-cache"}

page = APIRouter(tags=["web"], include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["web"])


# -- the static page ------------------------------------------------------------------------
@page.get("/", response_class=HTMLResponse)
def index_page() -> FileResponse:
    return FileResponse(WEB_ROOT / "index.html", media_type=_MEDIA[".html"], headers=_NO_CACHE)


@page.get("/docs", response_class=HTMLResponse)
def api_docs_page() -> FileResponse:
    """The API reference, rendered offline from /openapi.json (Swagger UI would load from a CDN)."""
    return FileResponse(WEB_ROOT / "docs.html", media_type=_MEDIA[".html"], headers=_NO_CACHE)


@page.get("/ui/{asset:path}")
def ui_asset(asset: str) -> FileResponse:
    """A file below ``radclip/web``; anything resolving outside it (``..``, links) is a 404."""
    path = (WEB_ROOT / asset).resolve()
    if not path.is_relative_to(WEB_ROOT) or not path.is_file() or path.suffix not in _MEDIA:
        raise ProblemError(404, "Not found", f"no UI asset {asset!r}", "reload the page from /", "not-found")
    return FileResponse(path, media_type=_MEDIA[path.suffix], headers=_NO_CACHE)


# -- corpus studies -------------------------------------------------------------------------
def _open_index(state: Any) -> Any:
    index = state.index
    if index is None:
        raise ProblemError(503, "Case index unavailable", f"the image-text model is not loaded: {safe_reason(state.load_errors.get('clip'))}",
                           "check RADCLIP_CLIP_MODEL and the server log", "model-unavailable")
    if index.key is None:
        w = state.warmup
        raise ProblemError(503, "Index warming" if w.state == "warming" else "Index unavailable",
                           f"the case index is {w.state}: {w.done} of {w.total} studies embedded",
                           "retry in a few seconds; GET /readyz shows the progress", "index-warming",
                           headers=warming_headers(w.state), index=safe_index(w.to_dict()))  # fmt: skip
    return index


def _study_row(state: Any, study_id: str) -> Any:
    from sqlalchemy import select

    from radclip.engine import db

    index = _open_index(state)
    with db.session_factory(index.engine)() as s:
        row = s.scalars(select(db.IndexItem).where(db.IndexItem.index_key == index.key.slug,
                                                   db.IndexItem.study_id == study_id).order_by(db.IndexItem.id)).first()  # fmt: skip
    if row is None:
        raise ProblemError(404, "Unknown study", f"no study {study_id!r} in the case index",
                           "pick a study from GET /api/v1/studies", "unknown-study")
    return row


def _row_dict(r: Any) -> dict[str, Any]:
    return {"study_id": r.study_id, "patient_id": r.patient_id, "view": r.view, "study_date": r.study_date,
            "findings": r.findings, "source": r.source}  # fmt: skip


@api.get("/studies", summary="Studies in the case index (for picking one to open)")
def list_studies(state: StateDep, q: str = Query("", max_length=200), limit: int = Query(50, ge=1, le=500),
                 offset: int = Query(0, ge=0, le=10_000_000)) -> dict[str, Any]:  # fmt: skip
    from sqlalchemy import func, or_, select

    from radclip.engine import db

    index = _open_index(state)
    where = [db.IndexItem.index_key == index.key.slug]
    if q.strip():
        like = f"%{q.strip()}%"
        where.append(or_(db.IndexItem.study_id.ilike(like), db.IndexItem.findings.ilike(like)))
    with db.session_factory(index.engine)() as s:
        total = int(s.scalar(select(func.count()).select_from(db.IndexItem).where(*where)))
        rows = s.scalars(select(db.IndexItem).where(*where).order_by(db.IndexItem.study_id).offset(offset).limit(limit)).all()
    return {"total": total, "items": [_row_dict(r) for r in rows]}


@api.get("/studies/{study_id:path}/file", summary="The study's image file (DICOM de-identified unless the role may see PHI)")
def study_file(request: Request, state: StateDep, study_id: str) -> Response:
    row = _study_row(state, study_id)
    path = Path(row.image_path)
    if not path.is_file():
        raise ProblemError(404, "Image missing", f"the image of study {study_id!r} is no longer on disk",
                           "rebuild the index (`radclip index`) after moving the corpus", "image-missing")
    media = _FILE_MEDIA.get(path.suffix.lower(), "application/octet-stream")
    if media == "application/dicom" and not may_see_phi(request):
        from radclip.integrations.deid import deidentified_dicom
        from radclip.integrations.phi import phi_key

        data = deidentified_dicom(path, phi_key(state.settings.home).decode())
        return Response(data, media_type=media, headers={"Cache-Control": "private, no-store", "X-Radclip-Deidentified": "basic-profile",
                                                         "Content-Disposition": 'attachment; filename="study-deidentified.dcm"'})  # fmt: skip
    return FileResponse(path, media_type=media, filename=path.name, headers={"Cache-Control": "private, max-age=3600"})


@lru_cache(maxsize=512)
def _thumbnail(path: str, mtime: float, size: int) -> bytes:
    from PIL import Image

    from radclip.io.loader import load_image

    pixels = _downsample(load_image(path).pixels, size)
    buf = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


@api.get("/studies/{study_id:path}/thumbnail", summary="An 8-bit PNG thumbnail of the study")
async def study_thumbnail(state: StateDep, study_id: str, size: int = Query(160, ge=32, le=512)) -> Response:
    path = Path(_study_row(state, study_id).image_path)
    if not path.is_file():
        raise ProblemError(404, "Image missing", f"the image of study {study_id!r} is no longer on disk",
                           "rebuild the index (`radclip index`) after moving the corpus", "image-missing")
    png = await run_in_threadpool(_thumbnail, str(path), path.stat().st_mtime, size)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# -- pixels and raw CAM for the viewer -------------------------------------------------------
def _downsample(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Box-filter by an integer factor so the long side is at most ``max_side`` (fast, no aliasing)."""
    f = math.ceil(max(pixels.shape) / max_side)
    if f <= 1:
        return pixels
    h, w = (pixels.shape[0] // f) * f, (pixels.shape[1] // f) * f
    return pixels[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


@api.post("/pixels", summary="Decoded pixels as uint16 for window/level in the browser", openapi_extra=IMAGE_BODY)
async def pixels(request: Request, state: StateDep, max_side: int = Query(1024, ge=64, le=4096)) -> Response:
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))

    def work() -> tuple[bytes, tuple[int, int], tuple[int, int], str]:
        from radclip.io.loader import load_image

        image = load_image(upload.data, max_pixels=state.settings.max_image_pixels, filename_hint=upload.filename)
        small = _downsample(image.pixels, max_side)
        raw = (np.clip(small, 0, 1) * 65535).round().astype("<u2").tobytes()
        return raw, small.shape, image.pixels.shape, image.meta.source_format

    raw, (h, w), (oh, ow), fmt = await run_in_threadpool(work)
    headers = {"X-Image-Width": str(w), "X-Image-Height": str(h), "X-Original-Width": str(ow),
               "X-Original-Height": str(oh), "X-Source-Format": fmt, "Cache-Control": "no-store"}  # fmt: skip
    return Response(raw, media_type="application/octet-stream", headers=headers)


@api.post("/cam", summary="Raw class activation map of one finding (8-bit PNG, centre square)", openapi_extra=IMAGE_BODY)
async def cam(request: Request, state: StateDep, label: str = Query(..., min_length=1, max_length=64)) -> dict[str, Any]:
    from PIL import Image

    runner = require_triage(state)
    try:
        idx = runner.label_index(label)
    except KeyError as exc:
        raise ProblemError(422, "Unknown finding", str(exc.args[0]), "use one of the 14 NIH finding names", "unknown-finding") from None
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))

    def work() -> tuple[Any, np.ndarray]:
        decoded = decode_upload(upload, runner.input_size, state.settings.max_image_pixels)
        result = runner.run(decoded.contract)
        return result, runner.cam(result, label)

    result, heat = await run_in_threadpool(work)
    buf = io.BytesIO()
    Image.fromarray((np.clip(heat, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return {"label": result.labels[idx], "probability": float(result.probs[idx]), "size": int(heat.shape[0]),
            "placement": "centre-square", "cam_png_base64": base64.b64encode(buf.getvalue()).decode()}  # fmt: skip


router = APIRouter()
router.include_router(page)
router.include_router(api)
