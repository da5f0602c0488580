"""``GET /api/v1/review/discordant``: the review queue of served studies where versions, or a version and the readers, disagree.

Built on each request from the prediction log (production beside canary/shadow, keyed by study),
the readers' feedback and production's operating points (:mod:`radclip.engine.discordance`). A
reviewer's verdict is recorded through ``POST /api/v1/feedback``, so it also feeds the live AUC.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
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
    ops = get_model_ops(request)
    if ops is None:
        raise ProblemError(503, "Review unavailable", "model operations are not running (no triage model or no database)",
                           "check the server log and /readyz, then restart", "ops-unavailable")  # fmt: skip
    return await run_in_threadpool(_discordant, ops, limit)


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
