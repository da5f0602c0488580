"""The HTTP service: ``create_app(settings)`` builds a FastAPI app whose ``lifespan`` loads each model once.

Triage and screening answer as soon as start-up returns; the retrieval index warms on a
background thread (see :mod:`radclip.service.state`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from radclip import __version__
from radclip.service.problems import install_problem_handlers
from radclip.service.state import ServiceState, build_state
from radclip.settings import Settings, get_settings

log = logging.getLogger(__name__)


def _install_request_metrics(app: FastAPI) -> None:
    """Latency histogram and status counter per endpoint (the route template, never the raw path)."""
    import time

    from fastapi import Request

    @app.middleware("http")
    async def _timed(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        state = getattr(request.app.state, "radclip", None)
        if state is not None:
            state.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - start)
            state.metrics.requests.labels(endpoint, f"{response.status_code // 100}xx").inc()
        return response


def create_app(settings: Settings | None = None, *, state: ServiceState | None = None) -> FastAPI:
    """Build the app. ``state`` lets tests inject pre-built components; otherwise lifespan builds them."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = state is None
        app.state.radclip = state if state is not None else build_state(settings)
        app.state.radclip.start_background()
        try:
            yield
        finally:
            app.state.radclip.stop_background()
            if own:
                app.state.radclip.close()

    app = FastAPI(
        title="radclip",
        version=__version__,
        summary="Chest X-ray triage with CAM explanation, zero-shot screening and similar-case retrieval.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    _install_request_metrics(app)
    from radclip.service.routers import conditions, health, retrieve, screen, studies, triage, web

    for module in (health, triage, screen, retrieve, conditions, web, studies):
        app.include_router(module.router)
    return app
