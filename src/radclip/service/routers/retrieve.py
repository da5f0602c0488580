"""Similar-case retrieval: a free-text query or an image query against the study index."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from radclip.service.deps import StateDep
from radclip.service.imaging import decode_upload
from radclip.service.problems import ProblemError
from radclip.service.readiness import safe_index, safe_reason, warming_headers
from radclip.service.routers.triage import IMAGE_BODY
from radclip.service.schemas import RetrievalHitOut, RetrieveRequest, RetrieveResponse
from radclip.service.uploads import read_image_upload

router = APIRouter(prefix="/api/v1", tags=["retrieval"])


def _require_ready_index(state: Any) -> Any:
    if state.retriever is None:
        reason = safe_reason(state.load_errors.get("clip"))
        raise ProblemError(503, "Retrieval unavailable", f"the image-text model is not loaded: {reason}",
                           "check RADCLIP_CLIP_MODEL and the server log", "model-unavailable")
    w = state.warmup
    if w.state == "warming":
        raise ProblemError(503, "Index warming", f"the case index is being built: {w.done} of {w.total} studies embedded",
                           "retry in a few seconds; GET /readyz shows the progress", "index-warming",
                           headers=warming_headers(w.state), index=w.to_dict())  # fmt: skip
    if w.state != "ready":
        raise ProblemError(503, "Index unavailable", f"the case index is {w.state}: {safe_index(w.to_dict())['detail'] or 'not built'}",
                           "set RADCLIP_CORPUS to a folder of images or a manifest and restart, or run `radclip index`",
                           "index-unavailable", index=safe_index(w.to_dict()))
    return state.retriever


def _hits(hits: list[Any]) -> list[RetrievalHitOut]:
    return [RetrievalHitOut(rank=h.rank, study_id=h.study_id, similarity=round(float(h.similarity), 6), metadata=h.metadata) for h in hits]


@router.post("/retrieve", response_model=RetrieveResponse, summary="Find prior cases matching a free-text description")
async def retrieve(body: RetrieveRequest, state: StateDep) -> RetrieveResponse:
    start = time.perf_counter()
    retriever = _require_ready_index(state)
    if not body.query.strip():
        raise ProblemError(422, "Empty query", "the query is blank", "describe the finding, e.g. 'left pleural effusion'", "empty-query")
    hits = await run_in_threadpool(retriever.search_text, body.query, body.top_k)
    return RetrieveResponse(results=_hits(hits), index=state.warmup.to_dict(), latency_ms=(time.perf_counter() - start) * 1000)


@router.post("/similar", response_model=RetrieveResponse, summary="Find prior cases similar to an uploaded image", openapi_extra=IMAGE_BODY)
async def similar(request: Request, state: StateDep, top_k: int = Query(10, ge=1, le=100)) -> RetrieveResponse:
    start = time.perf_counter()
    retriever = _require_ready_index(state)
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))
    decoded = await run_in_threadpool(decode_upload, upload, state.clip.input_size, state.settings.max_image_pixels)
    vector = await run_in_threadpool(state.image_batcher.submit(decoded.contract).result, 120)
    hits = await run_in_threadpool(retriever.search_vector, vector, top_k)
    return RetrieveResponse(results=_hits(hits), index=state.warmup.to_dict(), latency_ms=(time.perf_counter() - start) * 1000)
