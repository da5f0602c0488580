"""A small FHIR R4 REST client: httpx for HTTP, ``fhir.resources`` (R4B models) to validate before sending.

Create, read, update, search and transaction Bundles. Transport errors, timeouts and the
statuses in :data:`RETRYABLE` are retried with exponential backoff; each retry is logged
with the method, the resource path (never the body: it may carry identifiers) and the
reason. When the retries are spent :class:`FhirUnavailableError` is raised, so callers
(the delivery queue) keep the work for later; a 4xx answer raises :class:`FhirRequestError`
at once with the server's OperationOutcome diagnostics: retrying would not help.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


class FhirError(RuntimeError):
    """Base class for FHIR client errors."""


class FhirUnavailableError(FhirError):
    """The server could not be reached or kept failing; the request may succeed later."""


class FhirRequestError(FhirError):
    """The server refused the request (4xx); fix the request, retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FhirResourceInvalid(FhirError, ValueError):
    """A resource failed R4 validation before it was sent."""


@dataclass(frozen=True)
class FhirClientConfig:
    base_url: str  # e.g. http://127.0.0.1:8080/fhir/R4 (no trailing slash needed)
    timeout_s: float = 10.0  # per request (connect + read)
    retries: int = 3  # extra attempts after the first, for transport errors and RETRYABLE statuses
    backoff_s: float = 0.5  # first wait; doubles per attempt
    max_backoff_s: float = 8.0  # cap on one wait
    headers: tuple[tuple[str, str], ...] = ()  # extra headers
    auth: Any = None  # an httpx.Auth (radclip.integrations.fhir_auth: bearer token, OAuth2 / SMART Backend Services)


def validate_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate one resource (a Bundle validates its entries) against the R4B model; returns it as JSON."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(kind, str) or not kind.isalpha():
        raise FhirResourceInvalid(
            f"not a FHIR resource (resourceType={kind!r}); send a JSON object with a resourceType"
        )
    try:
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
    except (ImportError, AttributeError):
        raise FhirResourceInvalid(f"unknown FHIR resource type {kind!r}") from None
    try:
        return model.model_validate(resource).model_dump(mode="json", exclude_none=True)
    except Exception as exc:  # pydantic ValidationError: the first lines name the field
        first = "; ".join(str(exc).splitlines()[:3])
        raise FhirResourceInvalid(f"invalid FHIR {kind}: {first}") from None


def _diagnostics(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(
            str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
            for i in body.get("issue", [])
        )
    return str(body)[:200]


class FhirClient:
    """See the module docstring. Thread-safe (one ``httpx.Client``)."""

    def __init__(self, config: FhirClientConfig | str, transport: httpx.BaseTransport | None = None) -> None:
        self.config = FhirClientConfig(config) if isinstance(config, str) else config
        self.base = self.config.base_url.rstrip("/")
        headers = {"Accept": FHIR_JSON, **dict(self.config.headers)}
        self._http = httpx.Client(timeout=self.config.timeout_s, headers=headers, transport=transport, auth=self.config.auth)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        url = f"{self.base}/{path.lstrip('/')}" if path else self.base
        hdrs = {"Content-Type": FHIR_JSON, **(headers or {})} if json is not None else headers
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, url, json=json, params=params, headers=hdrs)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE:
                    raise FhirRequestError(f"FHIR {method} {path or '/'} refused with HTTP {response.status_code}: "
                                           f"{_diagnostics(response)}", response.status_code)  # fmt: skip
                reason = f"HTTP {response.status_code}: {_diagnostics(response)}"
            if attempt == attempts:
                raise FhirUnavailableError(f"FHIR {method} {path or '/'} failed after {attempts} attempt(s): {reason}; "
                                           f"is the server at {self.base} up?")  # fmt: skip
            wait = min(self.config.backoff_s * 2 ** (attempt - 1), self.config.max_backoff_s)
            log.warning(
                "FHIR %s %s attempt %d/%d failed (%s); retrying in %.2fs",
                method,
                path or "/",
                attempt,
                attempts,
                reason,
                wait,
            )
            time.sleep(wait)
        raise AssertionError("unreachable")

    # -- REST interactions ------------------------------------------------------------------
    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        """POST a validated resource; ``if_none_exist`` (e.g. ``identifier=sys|val``) makes it a conditional create."""
        body = validate_resource(resource)
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else None
        return self._request("POST", body["resourceType"], json=body, headers=headers).json()

    def update(self, resource: dict[str, Any]) -> dict[str, Any]:
        """PUT a validated resource at its id (creates it when absent: update-as-create)."""
        body = validate_resource(resource)
        if not body.get("id"):
            raise FhirResourceInvalid(f"{body['resourceType']} has no id; an update needs one")
        return self._request("PUT", f"{body['resourceType']}/{body['id']}", json=body).json()

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The resource, or None when the server answers 404/410."""
        try:
            return self._request("GET", f"{resource_type}/{resource_id}").json()
        except FhirRequestError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def search(self, resource_type: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every matching resource (follows ``next`` links; ``search.mode == include`` entries are kept too)."""
        out: list[dict[str, Any]] = []
        bundle = self._request("GET", resource_type, params=params).json()
        while True:
            out.extend(e["resource"] for e in bundle.get("entry", []) if "resource" in e)
            nxt = next((lk["url"] for lk in bundle.get("link", []) if lk.get("relation") == "next"), None)
            if not nxt:
                return out
            bundle = self._request("GET", nxt.removeprefix(self.base)).json()

    def count(self, resource_type: str, params: dict[str, str] | None = None) -> int:
        """How many resources match (``_summary=count``)."""
        bundle = self._request("GET", resource_type, params={**(params or {}), "_summary": "count"}).json()
        return int(bundle.get("total", 0))

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a ``transaction`` (or ``batch``) Bundle to the base; returns the response Bundle."""
        body = validate_resource(bundle)
        if body.get("type") not in ("transaction", "batch"):
            raise FhirResourceInvalid(
                f"Bundle.type is {body.get('type')!r}; a transaction needs 'transaction' or 'batch'"
            )
        return self._request("POST", "", json=body).json()
