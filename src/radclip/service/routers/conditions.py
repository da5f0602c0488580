"""The prompt registry over HTTP: list, register (or update), retire, history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from radclip.service.deps import StateDep
from radclip.service.problems import ProblemError
from radclip.service.readiness import safe_reason
from radclip.service.schemas import ConditionOut, RegisterConditionRequest, RegisterConditionResponse

router = APIRouter(prefix="/api/v1", tags=["conditions"])
NAME = Path(..., min_length=1, max_length=80, description="condition name (slug)")


def _registry(state: Any) -> Any:
    if state.registry is None:
        raise ProblemError(503, "Registry unavailable", f"the prompt registry is not loaded: {safe_reason(state.load_errors.get('clip'))}",
                           "check RADCLIP_CLIP_MODEL / RADCLIP_DATABASE_URL and the server log", "registry-unavailable")
    return state.registry


def _not_found(exc: Exception) -> ProblemError:
    return ProblemError(404, "Unknown condition", str(exc), "list the conditions with GET /api/v1/conditions", "unknown-condition")


@router.get("/conditions", response_model=list[ConditionOut], summary="Registered conditions")
def list_conditions(state: StateDep, include_retired: bool = Query(False), category: str | None = Query(None, max_length=40)) -> list[ConditionOut]:
    items = _registry(state).list(active_only=not include_retired)
    return [ConditionOut(**c.to_dict()) for c in items if category is None or c.category == category]


@router.post("/register-condition", response_model=RegisterConditionResponse, summary="Register a condition, or a new version of one")
async def register_condition(body: RegisterConditionRequest, state: StateDep) -> RegisterConditionResponse:
    from radclip.engine.registry import RegistryError

    registry = _registry(state)
    try:
        r = await run_in_threadpool(registry.register, body.name, body.prompts, body.synonyms, body.category, body.registered_by)
    except RegistryError as exc:
        raise ProblemError(422, "Invalid condition", str(exc), "correct the definition as the detail says", "invalid-condition") from None
    return RegisterConditionResponse(status=r.status, name=r.name, version=r.version, embedding_id=f"emb-{r.embedding_id:05d}")


@router.delete("/conditions/{name}", response_model=ConditionOut, summary="Retire a condition (kept for audit)")
def retire_condition(state: StateDep, name: str = NAME) -> ConditionOut:
    from radclip.engine.registry import ConditionNotFound

    try:
        return ConditionOut(**_registry(state).retire(name).to_dict())
    except ConditionNotFound as exc:
        raise _not_found(exc) from None


@router.get("/conditions/{name}/history", summary="Every version of a condition, oldest first (404 once retired)")
def condition_history(state: StateDep, name: str = NAME) -> list[dict[str, Any]]:
    from radclip.engine.registry import ConditionNotFound

    try:
        versions: list[dict[str, Any]] = _registry(state).history(name)
    except ConditionNotFound as exc:
        raise _not_found(exc) from None
    if any(v["current"] and v["status"] == "retired" for v in versions):
        # A retired condition is gone from the API (a client must not read it back after DELETE);
        # its versions stay in the registry for audit: `radclip conditions history NAME`.
        raise ProblemError(404, "Condition retired", f"condition {name!r} was retired",
                           f"register it again to bring it back, or read its versions with `radclip conditions history {name}`",
                           "condition-retired")  # fmt: skip
    return versions
