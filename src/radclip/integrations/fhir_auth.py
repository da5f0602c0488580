"""Authentication to the FHIR server, as an ``httpx.Auth``: a static bearer token, or OAuth2 client credentials.

- :class:`StaticBearer`: ``Authorization: Bearer <RADCLIP_FHIR_TOKEN>``.
- :class:`ClientCredentials`: the OAuth2 ``client_credentials`` grant at ``RADCLIP_FHIR_TOKEN_URL``,
  with ``client_secret_basic`` (``RADCLIP_FHIR_CLIENT_SECRET``) or SMART Backend Services
  (``private_key_jwt``: a JWT assertion signed RS384 with ``RADCLIP_FHIR_PRIVATE_KEY``, ``kid``
  ``RADCLIP_FHIR_KEY_ID``, lifetime 5 minutes as SMART requires). Token requests and assertions
  come from authlib. The token is cached and fetched again ``refresh_margin_s`` before it
  expires, and once more if the FHIR server answers 401 anyway (revoked early).

Secrets (token, client secret, key, assertion) never reach a log line, an error message or a
``repr``. A refused token request raises :class:`FhirAuthError` (the results stay queued).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import httpx

from radclip.integrations.fhir_client import FhirUnavailableError

ASSERTION_LIFETIME_S = 300  # SMART Backend Services: exp no more than five minutes after iat


class FhirAuthError(FhirUnavailableError):
    """The token endpoint refused radclip's credentials: fix the RADCLIP_FHIR_* settings; results stay queued."""


class StaticBearer(httpx.Auth):
    """A fixed bearer token (``RADCLIP_FHIR_TOKEN``)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticBearer(token=***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _private_key_jwt(token_url: str, key_id: str | None) -> Any:
    """authlib's ``private_key_jwt`` client auth, RS384, with a fresh 5-minute ``exp`` per assertion."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    class SmartPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
        alg = "RS384"

        def sign(self, auth: Any, token_endpoint: str) -> Any:
            self.claims = {
                "exp": int(time.time()) + ASSERTION_LIFETIME_S
            }  # a new dict: authlib adds the jti to it
            return super().sign(auth, token_endpoint)

    return SmartPrivateKeyJWT(token_url, headers={"kid": key_id} if key_id else None)


class ClientCredentials(httpx.Auth):
    """OAuth2 client credentials / SMART Backend Services; see the module docstring."""

    def __init__(self, token_url: str, client_id: str, client_secret: str | None = None, private_key_pem: str | None = None,
                 key_id: str | None = None, scope: str | None = None, refresh_margin_s: float = 60.0,
                 clock: Callable[[], float] = time.time, timeout_s: float = 10.0) -> None:  # fmt: skip
        if (client_secret is None) == (private_key_pem is None):
            raise ValueError("OAuth2 client credentials need exactly one of RADCLIP_FHIR_CLIENT_SECRET "
                             "(client_secret_basic) or RADCLIP_FHIR_PRIVATE_KEY (SMART Backend Services)")  # fmt: skip
        self.token_url, self.client_id, self.scope, self.key_id = token_url, client_id, scope, key_id
        self._secret = client_secret if client_secret is not None else private_key_pem
        self.method = "client_secret_basic" if client_secret is not None else "private_key_jwt"
        self.refresh_margin_s, self.clock, self.timeout_s = refresh_margin_s, clock, timeout_s
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0  # token requests made (operators and tests read it)

    def __repr__(self) -> str:
        return f"ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, method={self.method!r}, secret=***)"

    def _fetch(self) -> None:
        from authlib.integrations.base_client import OAuthError
        from authlib.integrations.httpx_client import OAuth2Client

        method = (
            _private_key_jwt(self.token_url, self.key_id) if self.method == "private_key_jwt" else self.method
        )
        session = OAuth2Client(
            self.client_id,
            self._secret,
            token_endpoint_auth_method=method,
            scope=self.scope,
            timeout=self.timeout_s,
        )
        try:
            token = session.fetch_token(self.token_url, grant_type="client_credentials")
        except OAuthError as exc:  # the endpoint's error code and description only: never the request
            raise FhirAuthError(f"the token endpoint {self.token_url} refused client {self.client_id!r} ({exc.error}: "
                                f"{exc.description}); check RADCLIP_FHIR_CLIENT_ID and the secret or key") from None  # fmt: skip
        except Exception as exc:  # transport errors from authlib's own HTTP client
            raise FhirAuthError(
                f"no token from {self.token_url} ({type(exc).__name__}); is the token endpoint up?"
            ) from None
        finally:
            session.close()
        self.fetches += 1
        self._token = str(token["access_token"])
        lifetime = float(token.get("expires_in") or 300)
        self._expires_at = self.clock() + lifetime

    def token(self, force: bool = False) -> str:
        """The cached access token, fetched when absent, forced, or within ``refresh_margin_s`` of expiry."""
        with self._lock:
            if force or self._token is None or self.clock() >= self._expires_at - self.refresh_margin_s:
                self._fetch()
            assert self._token is not None
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one retry with a fresh token
            request.headers["Authorization"] = f"Bearer {self.token(force=True)}"
            yield request


def auth_from_settings(settings: Any) -> httpx.Auth | None:
    """The auth the RADCLIP_FHIR_* settings ask for (token URL wins over a static token); None: no auth."""
    secret = getattr(settings, "fhir_client_secret", None)
    key_path = getattr(settings, "fhir_private_key", None)
    if getattr(settings, "fhir_token_url", None):
        if not settings.fhir_client_id:
            raise ValueError(
                "RADCLIP_FHIR_TOKEN_URL is set but RADCLIP_FHIR_CLIENT_ID is not; set the client id registered at the token endpoint"
            )
        pem = Path(key_path).expanduser().read_text() if key_path else None
        return ClientCredentials(settings.fhir_token_url, settings.fhir_client_id, secret.get_secret_value() if secret else None,
                                 pem, settings.fhir_key_id, settings.fhir_scope)  # fmt: skip
    token = getattr(settings, "fhir_token", None)
    return StaticBearer(token.get_secret_value()) if token else None
