"""``Annotated`` dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from radclip.service.problems import ProblemError
from radclip.service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.radclip  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]


def require_api_key(request: Request) -> None:
    """When ``RADCLIP_API_KEY`` is set, every /api request must carry it in ``X-API-Key``."""
    expected = get_state(request).settings.api_key
    if expected is None:
        return
    import hmac

    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ProblemError(401, "Unauthorized", "missing or wrong API key", "send the key in the X-API-Key header", "unauthorized")


ApiKeyDep = Depends(require_api_key)
