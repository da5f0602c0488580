"""FHIR authentication against a token endpoint that checks the client assertion (SMART Backend Services)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from smart_token_server import TokenServer, TokenServerState

from radclip.integrations.fhir_auth import ClientCredentials, FhirAuthError, StaticBearer, auth_from_settings
from radclip.integrations.fhir_client import FhirClient, FhirClientConfig, FhirRequestError

CLIENT = "radclip-backend"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def keys() -> tuple[str, str, object]:
    """(registered private PEM, an unregistered private PEM, the registered public key)."""
    from joserfc.jwk import RSAKey

    good, other = RSAKey.generate_key(2048), RSAKey.generate_key(2048)
    public = RSAKey.import_key(good.as_pem(private=False))
    return good.as_pem(private=True).decode(), other.as_pem(private=True).decode(), public


@pytest.fixture
def server(keys: tuple[str, str, object]) -> Iterator[TokenServer]:
    srv = TokenServer(
        TokenServerState(CLIENT, keys[2], kid="k1", secret="s3cret-client", static_tokens={"static-t0ken"})
    ).start()
    yield srv
    srv.stop()


def _client(server: TokenServer, auth: object) -> FhirClient:
    return FhirClient(FhirClientConfig(f"{server.base}/fhir/R4", retries=0, auth=auth))


def test_smart_backend_services_token_is_cached_and_refreshed(server: TokenServer, keys: tuple[str, str, object],
                                                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    auth = ClientCredentials(f"{server.base}/token", CLIENT, private_key_pem=keys[0], key_id="k1",
                             scope="system/DiagnosticReport.write", refresh_margin_s=30, clock=clock)  # fmt: skip
    with _client(server, auth) as client:
        assert client.search("Patient") == [] and client.search("Patient") == []
        assert (server.state.granted, server.state.fhir_ok, server.state.fhir_401) == (1, 2, 0)  # cached
        header, claims = server.state.assertion_headers[0], server.state.assertion_claims[0]
        assert header["alg"] == "RS384" and header["kid"] == "k1"
        assert claims["iss"] == claims["sub"] == CLIENT and 0 < claims["exp"] - claims["iat"] <= 300
        clock.t += 120 - 30 - 1  # still outside the refresh margin: the same token
        client.search("Patient")
        assert server.state.granted == 1
        clock.t += 2  # inside the margin before expiry: refreshed before it lapses
        client.search("Patient")
        assert server.state.granted == 2 and server.state.fhir_401 == 0
        server.state.issued.clear()  # revoked server-side: one 401, a fresh token, the request succeeds
        client.search("Patient")
        assert (server.state.granted, server.state.fhir_401) == (3, 1)
    assert len(server.state.seen_jti) == 3  # a new assertion (jti) per token request
    secrets_seen = [keys[0].splitlines()[1], *server.state.issued]
    assert (
        not any(s in caplog.text for s in secrets_seen)
        and "***" in repr(auth)
        and keys[0][40:80] not in repr(auth)
    )


def test_bad_assertions_are_rejected(server: TokenServer, keys: tuple[str, str, object]) -> None:
    wrong_key = ClientCredentials(f"{server.base}/token", CLIENT, private_key_pem=keys[1], key_id="k1")
    with (
        _client(server, wrong_key) as client,
        pytest.raises(FhirAuthError, match="invalid_client.*signature"),
    ):
        client.search("Patient")
    wrong_kid = ClientCredentials(f"{server.base}/token", CLIENT, private_key_pem=keys[0], key_id="k2")
    with _client(server, wrong_kid) as client, pytest.raises(FhirAuthError, match="kid k2 not accepted"):
        client.search("Patient")
    wrong_client = ClientCredentials(
        f"{server.base}/token", "someone-else", private_key_pem=keys[0], key_id="k1"
    )
    with _client(server, wrong_client) as client, pytest.raises(FhirAuthError, match="iss/sub/aud"):
        client.search("Patient")
    assert server.state.granted == 0 and server.state.fhir_ok == 0 and len(server.state.refused) == 3


def test_client_secret_and_static_bearer(server: TokenServer) -> None:
    ok = ClientCredentials(f"{server.base}/token", CLIENT, client_secret="s3cret-client")
    with _client(server, ok) as client:
        assert client.search("Patient") == [] and server.state.granted == 1
    bad = ClientCredentials(f"{server.base}/token", CLIENT, client_secret="guess")
    with _client(server, bad) as client, pytest.raises(FhirAuthError, match="bad client secret"):
        client.search("Patient")
    with _client(server, StaticBearer("static-t0ken")) as client:
        assert client.search("Patient") == []
    with _client(server, StaticBearer("wrong")) as client, pytest.raises(FhirRequestError, match="HTTP 401"):
        client.search("Patient")
    assert repr(StaticBearer("static-t0ken")) == "StaticBearer(token=***)"


def test_auth_from_settings(tmp_path: Path, keys: tuple[str, str, object]) -> None:
    from radclip.settings import load_settings

    pem = tmp_path / "key.pem"
    pem.write_text(keys[0])
    smart = auth_from_settings(
        load_settings(
            home=tmp_path,
            fhir_token_url="https://idp/token",
            fhir_client_id="c",
            fhir_private_key=pem,
            fhir_key_id="k",
        )
    )
    assert isinstance(smart, ClientCredentials) and smart.method == "private_key_jwt" and smart.key_id == "k"
    static = auth_from_settings(load_settings(home=tmp_path, fhir_token="abc"))
    assert isinstance(static, StaticBearer) and "abc" not in repr(
        load_settings(home=tmp_path, fhir_token="abc")
    )
    assert auth_from_settings(load_settings(home=tmp_path)) is None
    with pytest.raises(ValueError, match="RADCLIP_FHIR_CLIENT_ID"):
        auth_from_settings(load_settings(home=tmp_path, fhir_token_url="https://idp/token"))


def test_cli_client_carries_the_configured_auth(server: TokenServer, tmp_path: Path) -> None:
    from radclip.commands.pacs import _fhir_client
    from radclip.settings import load_settings

    settings = load_settings(home=tmp_path, fhir_url=f"{server.base}/fhir/R4", fhir_token="static-t0ken")
    with _fhir_client(None, settings) as client:  # RADCLIP_FHIR_URL + RADCLIP_FHIR_TOKEN, no --fhir
        assert client.search("Patient") == [] and server.state.fhir_ok == 1
    assert _fhir_client(None, load_settings(home=tmp_path)) is None
