"""The database as a component: a cheap reachability probe for /readyz and a 503 for a request that hits it down."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from radclip.service.problems import problem_response

log = logging.getLogger(__name__)
DATABASE_RETRY_AFTER_S = (
    5  # what a 503 tells the client to wait: a restarted PostgreSQL accepts within seconds
)


def database_status(engine: Any) -> dict[str, Any]:
    """``{"up": bool, "dialect": ...}``; the error is reduced to its type (its text names hosts and paths)."""
    if engine is None:
        return {"up": False, "reason": "not configured"}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"up": True, "dialect": engine.dialect.name}
    except Exception as exc:  # any failure means a request needing the database would fail now
        return {
            "up": False,
            "dialect": engine.dialect.name,
            "reason": f"{type(exc).__name__} (see the server log)",
        }


def _lost_connection(exc: Exception) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


def install_database_handler(app: FastAPI) -> None:
    """A request that finds the database unreachable is a 503 with Retry-After, not a 500 with a traceback."""

    @app.exception_handler(DBAPIError)
    async def _database_down(_: Request, exc: DBAPIError) -> JSONResponse:
        if not _lost_connection(exc):
            raise exc  # a real bug (constraint, SQL): the catch-all 500 handler logs it in full
        log.warning("database unavailable: %s", type(exc.orig or exc).__name__)
        response = problem_response(503, "Database unavailable", "radclip's database could not be reached to serve this request",
                                    f"retry after {DATABASE_RETRY_AFTER_S} s; an operator checks RADCLIP_DATABASE_URL and /readyz",
                                    "database-unavailable")  # fmt: skip
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
