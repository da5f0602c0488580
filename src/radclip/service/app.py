"""The HTTP service: ``create_app(settings)`` builds a FastAPI app whose ``lifespan`` loads each model once.

Triage and screening answer as soon as start-up returns; the retrieval index warms on a
background thread (see :mod:`radclip.service.state`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip import __version__
from radclip.service.audit_middleware import AuditMiddleware
from radclip.service.auth import (
    AccessControl,
    AuthBeforeBody,
    AuthRefused,
    RateLimited,
    authorize,
    check_exposure,
)
from radclip.service.contract import document_contract
from radclip.service.database_health import install_database_handler
from radclip.service.model_ops import build_model_ops
from radclip.service.problems import install_problem_handlers, problem_response
from radclip.service.roles import AUTHENTICATED, PUBLIC, rule_for
from radclip.service.security_headers import SecurityHeaders
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
        access = app.state.radclip_access = AccessControl.build(settings)
        check_exposure(settings, access.keys)  # before any model loads: a refused start should be quick
        app.state.radclip = state if state is not None else build_state(settings)
        app.state.radclip.start_background()
        ops = app.state.radclip_ops = build_model_ops(settings, app.state.radclip, access.keys.engine)
        try:
            yield
        finally:
            if ops is not None:
                ops.close()
            app.state.radclip.stop_background()
            if own:
                app.state.radclip.close()
            access.close()

    app = FastAPI(
        title="radclip",
        version=__version__,
        summary="Chest X-ray triage with CAM explanation, zero-shot screening and similar-case retrieval.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN and needs inline script; web.py serves an offline /docs
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_database_handler(app)
    from radclip.service.uploads import BodyLimit

    app.add_middleware(AuditMiddleware)  # innermost: sees the matched route and the principal
    install_access(app, settings)
    app.add_middleware(AuthBeforeBody)  # key and role checked before the body is read, not after it is parsed
    app.add_middleware(BodyLimit)  # every body is counted while it streams, before anything parses it
    app.add_middleware(RequestMetrics)
    from radclip.service.routers import access, conditions, health, retrieve, screen, studies, triage, web
    from radclip.service.routers import feedback as feedback_router
    from radclip.service.routers import models as model_admin
    from radclip.service.routers import review as review_queue

    for module in (health, triage, screen, retrieve, conditions, web, studies, access, model_admin, feedback_router, review_queue):
        app.include_router(module.router, dependencies=[Depends(authorize)])
    annotate_roles(app)
    return app


def install_access(app: FastAPI, settings: Settings) -> None:
    """429 carries Retry-After; security headers; CORS if configured (the role check is ``auth.authorize``)."""

    @app.exception_handler(RateLimited)
    async def _limited(_: Request, exc: RateLimited) -> JSONResponse:
        response = problem_response(exc.status, exc.title, exc.detail, exc.fix, exc.kind)
        response.headers["Retry-After"] = exc.retry_after
        return response

    @app.exception_handler(AuthRefused)
    async def _refused(request: Request, exc: AuthRefused) -> JSONResponse:
        if isinstance(exc.problem, RateLimited):
            return await _limited(request, exc.problem)
        p = exc.problem
        response = problem_response(p.status, p.title, p.detail, p.fix, p.kind, **p.extra)
        response.headers.update(p.headers)
        return response

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # CORS stays off unless origins are configured
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])  # fmt: skip
    app.add_middleware(SecurityHeaders, allowed_origins=frozenset(origins))


def _triage_labels(app: FastAPI) -> list[str]:
    """The loaded triage model's findings; the NIH-14 names while none is loaded."""
    from radclip.io.labels import NIH_LABELS

    runner = getattr(getattr(app.state, "radclip", None), "triage", None)
    return list(getattr(runner, "labels", None) or NIH_LABELS)


def annotate_roles(app: FastAPI) -> None:
    """State each operation's role in the OpenAPI document: ``x-radclip-role``, ``x-radclip-audit`` and a description line."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = generate()
        for path, operations in doc.get("paths", {}).items():
            for method, op in operations.items():
                rule = rule_for(method.upper(), path)
                op["x-radclip-role"] = rule.role
                if rule.action:
                    op["x-radclip-audit"] = rule.action
                note = {PUBLIC: "No key needed.", AUTHENTICATED: "Requires any valid key."}.get(
                    rule.role, f"Requires role `{rule.role}` (or `admin`)."
                )
                op["description"] = f"{op.get('description', '')}\n\n{note}".strip()
        return document_contract(doc, _triage_labels(app))

    app.openapi = openapi  # type: ignore[method-assign]
