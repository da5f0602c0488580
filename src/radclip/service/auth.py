"""Authentication and authorisation: who is calling (stored key, bootstrap key, or the open local run) and may they.

``authorize`` is the one dependency, wired on every router in ``service/app.py``; the role it demands
comes from :mod:`radclip.service.roles`. Keys arrive in ``X-API-Key`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radclip.engine.audit import AuditTrail
from radclip.engine.keys import KeyStore, Principal
from radclip.service.problems import ProblemError
from radclip.service.rate_limit import RateLimiter, retry_after_header
from radclip.service.roles import PUBLIC, allows, rule_for
from radclip.settings import Settings, parse_rate_limits

log = logging.getLogger(__name__)
PRINCIPAL = "radclip.principal"  # scope key: the authenticated principal, read by the audit middleware
# scope key: ``authorize`` passed; a second call (the body gate, then the dependency) is a no-op
AUTHORIZED = "radclip.authorized"
BOOTSTRAP = Principal("bootstrap", "admin")
LOCAL = Principal("local", "admin")
CREATE_HINT = "create one with `radclip keys create --name NAME --role reader|ingest|admin`"


class AccessConfigError(RuntimeError):
    """The service would be reachable from the network without any key."""


class RateLimited(ProblemError):
    def __init__(self, wait_s: float, who: str) -> None:
        super().__init__(429, "Too many requests", f"key {who!r} is over its request rate limit",
                         f"retry after {retry_after_header(wait_s)} s, or ask an admin to raise RADCLIP_RATE_LIMITS", "rate-limited")  # fmt: skip
        self.retry_after = retry_after_header(wait_s)


def is_loopback(host: str | None) -> bool:
    if host in ("localhost", "testclient"):  # testclient: Starlette's in-process client
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def client_address(scope: dict[str, Any], trusted_proxies: frozenset[str]) -> str:
    """The peer address; behind a configured proxy, the right-most X-Forwarded-For hop that is not a proxy."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if peer not in trusted_proxies:
        return str(peer)
    forwarded = next(
        (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"), ""
    )
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if hop not in trusted_proxies:
            return hop
    return str(peer)


@dataclass
class AccessControl:
    """What ``authorize`` needs: the key store, the bootstrap key, the rate limiter, trusted proxies."""

    settings: Settings
    keys: KeyStore
    limiter: RateLimiter
    trusted_proxies: frozenset[str]
    audit: AuditTrail | None = None
    # radclip.integrations.phi.Pseudonymiser: study ids in the trail are keyed pseudonyms
    pseudonymiser: Any = None
    phi_roles: frozenset[str] = frozenset()  # roles served original DICOM headers (RADCLIP_PHI_ROLES)

    @classmethod
    def build(cls, settings: Settings) -> AccessControl:
        """Open (and migrate) the engine database for keys and the audit trail."""
        from radclip.engine import db
        from radclip.integrations.phi import Pseudonymiser

        settings.home.mkdir(parents=True, exist_ok=True)
        engine = db.make_engine(
            settings.resolved_database_url, hide_parameters=True
        )  # no study ids or paths in error logs
        db.migrate(engine)
        _prefer_wal(engine)
        proxies = frozenset(p.strip() for p in settings.trusted_proxies.split(",") if p.strip())
        limiter = RateLimiter(parse_rate_limits(settings.rate_limits), settings.redis_url)
        return cls(
            settings,
            KeyStore(engine),
            limiter,
            proxies,
            AuditTrail(engine),
            Pseudonymiser.for_home(settings.home),
            frozenset(r.strip() for r in settings.phi_roles.split(",") if r.strip()),
        )

    def close(self) -> None:
        self.keys.engine.dispose()

    def open_mode(self) -> bool:
        """No bootstrap key and no usable stored key: the local run answers loopback callers without a key."""
        return self.settings.api_key is None and self.keys.active_count() == 0

    def authenticate(self, presented: str, client: str) -> Principal:
        if presented:
            boot = self.settings.api_key
            if boot is not None and hmac.compare_digest(presented.encode(), boot.encode()):
                return BOOTSTRAP
            principal = self.keys.verify(presented)
            if principal is None:
                raise ProblemError(401, "Unauthorized", "the API key is not valid: unknown, expired or revoked",
                                   f"send a current key in the X-API-Key header; {CREATE_HINT}", "unauthorized")  # fmt: skip
            return principal
        if not self.open_mode():
            raise ProblemError(401, "Unauthorized", "this request needs an API key and none was sent",
                               f"send the key in the X-API-Key header; {CREATE_HINT}", "unauthorized")  # fmt: skip
        if not is_loopback(client):
            raise ProblemError(401, "Unauthorized", "this radclip has no API keys, so it answers only on loopback",
                               f"{CREATE_HINT}, then send it in the X-API-Key header", "unauthorized")  # fmt: skip
        return LOCAL


def _prefer_wal(engine: Any) -> None:
    """SQLite: write-ahead log, so an audited request pays one fsync, not a rollback journal's several.

    Measured on this project's shared 2-core machine (benchmarks/access_bench.py, three runs): a
    hash-chained append took 17-19 ms (p50) with the default journal and 4-8 ms with WAL, synchronous=FULL.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except Exception as exc:  # another process holds the database: keep its journal mode
        log.warning("could not switch the SQLite database to WAL: %s", type(exc).__name__)


def check_exposure(settings: Settings, keys: KeyStore) -> None:
    """Refuse to serve a non-loopback address when no key exists (the open mode is for local use only)."""
    if is_loopback(settings.host) or settings.api_key is not None or keys.active_count() > 0:
        return
    raise AccessConfigError(
        f"refusing to listen on {settings.host}: no API key exists, so anyone on the network could use the service. "
        f"Create an admin key with `radclip keys create --name NAME --role admin` (or set RADCLIP_API_KEY), "
        "or bind 127.0.0.1 (`radclip serve --host 127.0.0.1`)."
    )


def may_see_phi(request: Request) -> bool:
    """Whether the authenticated caller's role is listed in ``RADCLIP_PHI_ROLES`` (none by default)."""
    principal = request.scope.get(PRINCIPAL)
    access = getattr(request.app.state, "radclip_access", None)
    return principal is not None and access is not None and principal.role in access.phi_roles


def presented_key(request: Request) -> str:
    key = request.headers.get("x-api-key", "")
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return key.strip()


def authorize(request: Request) -> None:
    """The route's role (from ``roles.RULES``) against the caller's; 401, 403 or 429 as problem+json."""
    if request.scope.get(AUTHORIZED):
        return
    route = request.scope.get("route")
    required = rule_for(request.method, getattr(route, "path", request.url.path)).role
    if required == PUBLIC:
        request.scope[AUTHORIZED] = True
        return
    access: AccessControl = request.app.state.radclip_access
    principal = access.authenticate(
        presented_key(request), client_address(request.scope, access.trusted_proxies)
    )
    request.scope[PRINCIPAL] = principal
    if not allows(principal.role, required):
        raise ProblemError(403, "Forbidden", f"key {principal.name!r} has role {principal.role!r}; this operation needs {required!r}",
                           f"use a key with role {required!r} (an admin creates one with `radclip keys create --role {required}`)",
                           "forbidden", required_role=required)  # fmt: skip
    if principal is not LOCAL:  # the open local run is one user on loopback: nothing to share fairly
        wait = access.limiter.take(principal.name, principal.role)
        if wait > 0:
            raise RateLimited(wait, principal.name)
    request.scope[AUTHORIZED] = True


class AuthRefused(StarletteHTTPException):
    """A refusal raised while FastAPI reads the body; it turns any non-HTTP exception there into a bare 400."""

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.status, problem.detail)
        self.problem = problem


class AuthBeforeBody:
    """Run ``authorize`` on the first read of a request body, so a refused caller's body is never read.

    FastAPI reads and parses a JSON body before it runs any dependency, ``authorize`` included; the
    router has already matched the route (``scope["route"]``) by the time the body is read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def gated() -> Message:
            if not scope.get(AUTHORIZED):
                try:
                    authorize(Request(scope))
                except ProblemError as exc:
                    raise AuthRefused(exc) from None
            return await receive()

        await self.app(scope, gated, send)
