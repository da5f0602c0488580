"""Who am I: the caller's key name, role and the operations that role may call (the web UI hides the rest)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from radclip.service.auth import PRINCIPAL, may_see_phi
from radclip.service.roles import operations_for

router = APIRouter(prefix="/api/v1", tags=["access"])


@router.get("/whoami", summary="The calling key's name, role and permitted operations")
def whoami(request: Request) -> dict[str, Any]:
    principal = request.scope[PRINCIPAL]  # set by auth.authorize, which runs before every route
    return {"name": principal.name, "role": principal.role, "phi": may_see_phi(request),
            "operations": operations_for(principal.role)}  # fmt: skip
