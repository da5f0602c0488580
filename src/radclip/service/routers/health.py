"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from radclip.service.deps import StateDep
from radclip.service.readiness import public_readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded; index state (warming with progress, or ready)")
def readyz(state: StateDep) -> dict[str, Any]:
    return public_readiness(state.readiness())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    body, content_type = state.metrics.render()
    return Response(content=body, media_type=content_type)
