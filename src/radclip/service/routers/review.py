"""``GET /api/v1/review/discordant``: the review queue of served studies where versions, or a version and the readers, disagree.

Built on each request from the prediction log (production beside canary/shadow, keyed by study),
the readers' feedback and production's operating points (:mod:`radclip.engine.discordance`). A
reviewer's verdict is recorded through ``POST /api/v1/feedback``, so it also feeds the live AUC.
``GET /api/v1/review/discordant/{study_id}/heatmap`` draws one version's map of one finding over the
study's thumbnail, from the review store (:mod:`radclip.lifecycle.review_store`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from radclip.service.model_ops import ModelOps, get_model_ops
from radclip.service.problems import ProblemError

router = APIRouter(prefix="/api/v1/review", tags=["model operations"])


@router.get("/discordant", summary="Served studies where model versions, or a version and the readers, disagree on a finding",
            responses={503: {"description": "model operations are not running"}})  # fmt: skip
async def discordant(
    request: Request,
    limit: int = Query(
        200, ge=1, le=2000, description="scan the predictions of this many most recent studies"
    ),
) -> dict[str, Any]:
    return await run_in_threadpool(_discordant, _require_ops(request), limit)


def _require_ops(request: Request) -> ModelOps:
    ops = get_model_ops(request)
    if ops is None:
        raise ProblemError(503, "Review unavailable", "model operations are not running (no triage model or no database)",
                           "check the server log and /readyz, then restart", "ops-unavailable")  # fmt: skip
    return ops


def _discordant(ops: ModelOps, limit: int) -> dict[str, Any]:
    from radclip.engine.discordance import find_discordant
    from radclip.integrations.operating_points import triage_operating_points
    from radclip.lifecycle.feedback_monitor import WINDOW_STUDIES

    production = ops.lifecycle.deployment.production
    thresholds = triage_operating_points(tuple(production.runner.labels), production.runner.card.calibration)
    predictions = ops.shadow.predictions.recent(limit)
    labels = ops.feedback.window(WINDOW_STUDIES).as_mapping()
    studies = find_discordant(predictions, thresholds, labels)
    return {"production": production.ref, "studies_scanned": len({p.study_key for p in predictions}),
            "discordant": [s.to_dict() for s in studies]}  # fmt: skip


PNG_ANSWER = {200: {"description": "the heat map over the study's thumbnail (RGB PNG)",
                    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}}  # fmt: skip


@router.get("/discordant/{study_id}/heatmap", response_class=Response, responses=PNG_ANSWER,
            summary="One version's heat map of one finding over a served study's thumbnail")  # fmt: skip
async def heatmap(
    request: Request,
    study_id: str = PathParam(
        ..., min_length=1, max_length=300, description="the study key of the discordant list"
    ),
    version: str = Query(
        ..., min_length=1, max_length=200, description="name@version, a `calls[].ref` of the list"
    ),
    finding: str = Query(..., min_length=1, max_length=64, description="the finding to draw, e.g. Effusion"),
) -> Response:
    ops = _require_ops(request)
    if ops.shadow.review is None:
        raise ProblemError(503, "Review unavailable", "the service keeps no heat maps (no review store)",
                           "start the service with model operations (a triage model and a database)", "ops-unavailable")  # fmt: skip
    from radclip.lifecycle.review_store import NotStored, UnknownFinding

    try:
        png = await run_in_threadpool(ops.shadow.review.overlay_png, study_id, version, finding)
    except NotStored as exc:
        raise ProblemError(404, "Heat map not kept", str(exc.args[0]),
                           "pick a study and a `calls[].ref` from GET /api/v1/review/discordant", "heatmap-not-kept") from None  # fmt: skip
    except UnknownFinding as exc:
        raise ProblemError(
            422,
            "Unknown finding",
            str(exc),
            "use one of the finding names the detail lists",
            "unknown-finding",
        ) from None
    # PHI-adjacent pixels: never kept by a browser or proxy cache
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
