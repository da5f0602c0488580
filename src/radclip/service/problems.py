"""RFC 9457 problem+json errors. Every 4xx says what was wrong and how to fix it; no 500 leaks a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip.io import errors as io_errors

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://radclip.dev/problems/"


class ProblemError(Exception):
    """Raise from a route to answer with a problem+json body."""

    def __init__(self, status: int, title: str, detail: str, fix: str, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:  # fmt: skip
        super().__init__(detail)
        self.status, self.title, self.detail, self.fix = status, title, detail, fix
        self.kind = kind or title.lower().replace(" ", "-")
        self.headers = headers or {}  # e.g. Retry-After on a 503 while the index warms
        self.extra = extra


def problem_response(status: int, title: str, detail: str, fix: str, kind: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail, "fix": fix, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


# Input errors from the loaders map to specific statuses.
_INPUT_STATUS: dict[type[Exception], tuple[int, str]] = {
    io_errors.ImageTooLargeError: (413, "Image too large"),
    io_errors.UnsupportedFormatError: (415, "Unsupported image format"),
    io_errors.EmptyFileError: (400, "Empty upload"),
    io_errors.CorruptImageError: (400, "Corrupt image"),
    io_errors.NotAnImageError: (422, "Not an image"),
    io_errors.MultiFrameError: (422, "Multi-frame image"),
    io_errors.UnsupportedModalityError: (422, "Unsupported modality"),
}


def _input_error_status(exc: io_errors.RadclipInputError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in _INPUT_STATUS:
            return _INPUT_STATUS[cls]
    return 400, "Invalid image"


CANDIDATE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route fully matches on this path (Starlette's own 405 names only the first router's)."""
    from starlette.routing import Match

    allowed = []
    for method in CANDIDATE_METHODS:
        probe = {**scope, "method": method, "fastapi": {}}  # matching may write there: never into the real scope
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        response = problem_response(exc.status, exc.title, exc.detail, exc.fix, exc.kind, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(io_errors.RadclipInputError)
    async def _bad_image(_: Request, exc: io_errors.RadclipInputError) -> JSONResponse:
        status, title = _input_error_status(exc)
        return problem_response(
            status, title, str(exc), "send a single-frame chest radiograph as DICOM (CR/DX), PNG or JPEG", title.lower().replace(" ", "-")
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(
            422, "Invalid request", f"the request does not match the API schema: {where}",
            "correct the named fields (see /docs for the schema)", "invalid-request", errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 413: "Request body too large"}.get(exc.status_code, "HTTP error")
        fix = {404: "check the URL against /docs", 405: "use the method listed in /docs",
               413: "send a smaller body (see the limit in the detail)"}.get(exc.status_code, "see /docs")  # fmt: skip
        response = problem_response(exc.status_code, title, str(exc.detail), fix, title.lower().replace(" ", "-"))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: list every method of the path, across all routers
            response.headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope)) or "GET"
        return response

    @app.exception_handler(io_errors.MissingDependencyError)
    async def _missing_decoder(_: Request, exc: io_errors.MissingDependencyError) -> JSONResponse:
        # A client can fix this without the operator: send the image in an encoding this server decodes.
        return problem_response(415, "Unsupported image encoding", str(exc),
                                "re-export the image uncompressed (or as PNG), or ask the operator to run the install command in the detail",
                                "unsupported-image-encoding")  # fmt: skip

    # Unexpected errors are answered by UnhandledErrors below, not by an ``Exception`` handler: Starlette
    # hands such a handler to ServerErrorMiddleware, which re-raises after answering, so uvicorn logs the
    # error a second time and drops the keep-alive connection.
    app.add_middleware(UnhandledErrors)


class UnhandledErrors:
    """Answer any exception that escapes the routes with a 500 problem, log it once, keep the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = [False]

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unhandled error: %s", type(exc).__name__)
            if started[0]:  # part of a response went out: nothing valid can follow, let the server close
                raise
            response = problem_response(500, "Internal error", "radclip failed to process this request",
                                        "retry; if it persists, report it with the server log time", "internal")  # fmt: skip
            await response(scope, receive, send)
