"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from radclip.service.database_health import database_status
from radclip.service.deps import StateDep
from radclip.service.readiness import public_readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded; index state (warming with progress, or ready)")
def readyz(state: StateDep, request: Request) -> dict[str, Any]:
    report = public_readiness(state.readiness())
    access = getattr(request.app.state, "radclip_access", None)
    report["database"] = database_status(access.keys.engine if access is not None else None)
    if not report["database"]["up"]:
        report["status"] = "degraded"  # keys, audit trail, registry and index metadata live there
    return report


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    body, content_type = state.metrics.render()
    return Response(content=body, media_type=content_type)
