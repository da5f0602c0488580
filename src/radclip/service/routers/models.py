"""Admin API over the model registry: list, register, shadow, canary, promote, rollback (mirrors ``radclip models``).

Every change is written with the caller's key name in the stage history, and the lifecycle is
refreshed before the answer, so the change is in effect in this process when the response arrives.
A version is loaded before it is staged: one that cannot load is refused (422) and nothing changes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from radclip.service.auth import PRINCIPAL
from radclip.service.model_ops import ModelOps, get_model_ops
from radclip.service.problems import ProblemError
from radclip.service.schemas import STRICT_BODY

router = APIRouter(prefix="/api/v1/models", tags=["model operations"])


class RegisterBody(BaseModel):
    model_config = STRICT_BODY
    path: str = Field(
        min_length=1, max_length=4096, description="a .safetensors on the server, its .card.json beside it"
    )
    production: bool = Field(False, description="register as production (only when the name has none)")


class CanaryBody(BaseModel):
    model_config = STRICT_BODY
    percent: float = Field(gt=0, lt=100, description="share of studies the canary answers, e.g. 10, 25, 50")


class ReasonBody(BaseModel):
    model_config = STRICT_BODY
    reason: str = Field("", max_length=500, description="why, for the stage history")


def _ops(request: Request) -> ModelOps:
    ops = get_model_ops(request)
    if ops is None:
        reason = request.app.state.radclip.load_errors.get("lifecycle", "no triage model is loaded")
        raise ProblemError(503, "Model operations unavailable", f"the model lifecycle is not running: {reason}",
                           "check RADCLIP_TRIAGE_MODEL and the database in the server log, then restart", "ops-unavailable")  # fmt: skip
    return ops


def _actor(request: Request) -> str:
    principal = request.scope.get(PRINCIPAL)
    return getattr(principal, "name", "unknown")


def _state(ops: ModelOps) -> dict[str, Any]:
    lc = ops.lifecycle
    return {"model": lc.name, "versions": [v.to_dict() for v in lc.stages.list(lc.name)],
            "serving": lc.deployment.describe()}  # fmt: skip


def _change(ops: ModelOps, action: Any, ref: str | None = None) -> dict[str, Any]:
    """Load ``ref`` first (refuse if it cannot load), apply the change, refresh the lifecycle."""
    from radclip.engine.model_stages import StageError

    lc = ops.lifecycle
    try:
        if ref is not None:
            info = lc.stages.get(ref)
            try:
                lc.runner_for(info)
            except Exception as exc:
                raise ProblemError(422, "Model cannot load", f"{ref} did not load, so its stage is unchanged: {exc}",
                                   "fix or re-register the weights and card, then retry", "model-unloadable") from None  # fmt: skip
        changed = action()
    except StageError as exc:
        status = 404 if "no registered model" in str(exc) or "no model card" in str(exc) else 409
        raise ProblemError(status, "Model stage change refused", str(exc),
                           "see GET /api/v1/models for each version's stage", "stage-refused") from None  # fmt: skip
    lc.refresh()
    changed = changed if isinstance(changed, list) else [changed]
    return {"changed": [v.to_dict() for v in changed], **_state(ops)}


# A refused stage change (nothing to promote, an unknown version, a file that is not a model) is a 409.
STAGE_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"description": "Stage change refused: the detail says why and the fix how", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
}


@router.get("", summary="Registered versions of the served model, their stages, and what serves now")
async def list_models(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_state, _ops(request))


@router.get("/history", summary="Stage history: who moved which version, when and why")
async def history(request: Request) -> dict[str, Any]:
    ops = _ops(request)
    events = await run_in_threadpool(ops.lifecycle.stages.history, ops.lifecycle.name)
    return {"model": ops.lifecycle.name, "events": [e.to_dict() for e in events]}


@router.post("", summary="Register a version (candidate)", status_code=201, responses=STAGE_REFUSED)
async def register(request: Request, body: RegisterBody) -> dict[str, Any]:
    ops, who = _ops(request), _actor(request)
    stage = "production" if body.production else "candidate"
    return await run_in_threadpool(_change, ops, lambda: ops.lifecycle.stages.register(body.path, who, stage))


@router.post("/{ref}/shadow", summary="Run NAME@VER as shadow beside production", responses=STAGE_REFUSED)
async def shadow(request: Request, ref: str, body: ReasonBody | None = None) -> dict[str, Any]:
    ops, who, why = _ops(request), _actor(request), (body.reason if body else "")
    return await run_in_threadpool(_change, ops, lambda: ops.lifecycle.stages.shadow(ref, who, why), ref)


@router.post("/{ref}/canary", summary="Let NAME@VER answer a share of studies", responses=STAGE_REFUSED)
async def canary(request: Request, ref: str, body: CanaryBody) -> dict[str, Any]:
    ops, who = _ops(request), _actor(request)
    return await run_in_threadpool(
        _change, ops, lambda: ops.lifecycle.stages.canary(ref, body.percent, who), ref
    )


@router.post("/{ref}/promote", summary="Make NAME@VER (or NAME's canary, else shadow) production", responses=STAGE_REFUSED)
async def promote(request: Request, ref: str, body: ReasonBody | None = None) -> dict[str, Any]:
    ops, who, why = _ops(request), _actor(request), (body.reason if body else "")
    target = ref if "@" in ref else None
    return await run_in_threadpool(_change, ops, lambda: ops.lifecycle.stages.promote(ref, who, why), target)


@router.post(
    "/{name}/rollback", summary="Retire NAME's canary and shadow, or restore its previous production", responses=STAGE_REFUSED
)
async def rollback(request: Request, name: str, body: ReasonBody | None = None) -> dict[str, Any]:
    ops, who, why = _ops(request), _actor(request), (body.reason if body else "")
    return await run_in_threadpool(_change, ops, lambda: ops.lifecycle.stages.rollback(name, who, why))
