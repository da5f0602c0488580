"""``Annotated`` dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from radclip.service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.radclip  # type: ignore[no-any-return]


StateDep = Annotated[ServiceState, Depends(get_state)]
