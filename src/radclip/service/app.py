"""The HTTP service: ``create_app(settings)`` builds a FastAPI app whose ``lifespan`` loads each model once.

Triage and screening answer as soon as start-up returns; the retrieval index warms on a
background thread (see :mod:`radclip.service.state`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip import __version__
from radclip.service.problems import install_problem_handlers
from radclip.service.state import ServiceState, build_state
from radclip.settings import Settings, get_settings

log = logging.getLogger(__name__)


class RequestMetrics:
    """Latency histogram and status counter per endpoint (the route template, never the raw path).

    Pure ASGI rather than ``@app.middleware("http")``, whose ``BaseHTTPMiddleware`` wraps every
    request in an extra task and stream pair (about a millisecond a request here).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            app = scope.get("app")
            state = getattr(app.state, "radclip", None) if app is not None else None
            if state is not None:
                endpoint = getattr(scope.get("route"), "path", "unmatched")  # the router stores the matched route here
                state.metrics.request_latency.labels(endpoint).observe(time.perf_counter() - start)
                state.metrics.requests.labels(endpoint, f"{status[0] // 100}xx").inc()


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
    from radclip.service.uploads import BodyLimit

    app.add_middleware(BodyLimit)  # every body is counted while it streams, before anything parses it
    app.add_middleware(RequestMetrics)
    from radclip.service.routers import conditions, health, retrieve, screen, studies, triage, web

    for module in (health, triage, screen, retrieve, conditions, web, studies):
        app.include_router(module.router)
    return app
