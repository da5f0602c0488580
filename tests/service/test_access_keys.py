"""Role-scoped keys: hashing, 401/403 per operation from the OpenAPI role annotations, expiry, revocation, open mode."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.service.access_helpers import access_client, make_settings, store

ROLES = ("reader", "ingest", "admin")


def _key(client: Any, role: str, name: str | None = None, **kw: Any) -> str:
    return str(store(client).create(name or f"k-{role}", role, **kw))


def _call(client: Any, method: str, path: str, key: str | None) -> int:
    url = re.sub(r"\{[^}]+\}", "x", path)
    headers = {"X-API-Key": key} if key is not None else {}
    return int(client.request(method.upper(), url, headers=headers).status_code)


def test_each_role_against_each_operation_from_the_openapi_annotations(tmp_path: Path) -> None:
    with access_client(tmp_path, api_key="boot-strap-key-1") as c:
        keys = {role: _key(c, role) for role in ROLES}
        ops = [
            (m, p, op["x-radclip-role"])
            for p, item in c.get("/openapi.json").json()["paths"].items()
            for m, op in item.items()
        ]
        assert len(ops) >= 20 and {r for _, _, r in ops} == {
            "public",
            "authenticated",
            *ROLES,
        }  # every role guards something
        checked = 0
        for method, path, required in ops:
            for who, key in [
                ("none", None),
                ("invalid", "rck_0000000000000000_nope"),
                *keys.items(),
                ("bootstrap", "boot-strap-key-1"),
            ]:
                status = _call(c, method, path, key)
                if required == "public":
                    assert status not in (401, 403), (method, path, who, status)
                elif who in ("none", "invalid"):
                    assert status == 401, (method, path, who, status)
                elif who in ("admin", "bootstrap") or who == required or required == "authenticated":
                    assert status not in (401, 403), (method, path, who, status)
                else:
                    assert status == 403, (method, path, who, status)
                checked += 1
        assert checked == len(ops) * 6


def test_problem_bodies_say_what_and_how(tmp_path: Path) -> None:
    with access_client(tmp_path) as c:
        reader = _key(c, "reader", "ward-1")
        r = c.post("/api/v1/studies", headers={"X-API-Key": reader})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert (
            r.json()["required_role"] == "ingest"
            and "ward-1" in r.json()["detail"]
            and "--role ingest" in r.json()["fix"]
        )
        r = c.get("/api/v1/whoami")
        assert (
            r.status_code == 401
            and r.headers["content-type"] == "application/problem+json"
            and "X-API-Key" in r.json()["fix"]
        )
        who = c.get(
            "/api/v1/whoami", headers={"Authorization": f"Bearer {reader}"}
        ).json()  # Prometheus-style header
        assert (
            who["name"] == "ward-1"
            and who["role"] == "reader"
            and "POST /api/v1/studies" not in who["operations"]
        )


def test_keys_are_stored_hashed_and_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), access_client(tmp_path) as c:
        key = _key(c, "reader")
        assert c.get("/api/v1/whoami", headers={"X-API-Key": key}).status_code == 200
        c.get("/api/v1/whoami", headers={"X-API-Key": key + "x"})
    secret = key.rsplit("_", 1)[-1]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("radclip.db*"))  # the database and its WAL
    assert secret.encode() not in raw and key.encode() not in raw
    with sqlite3.connect(tmp_path / "radclip.db") as con:
        ((salt, digest),) = con.execute("select salt, key_hash from api_keys").fetchall()
    from radclip.engine.keys import hash_key

    assert (
        len(salt) == 16
        and bytes(digest) == hash_key(key, bytes(salt))
        and bytes(digest) != hash_key(key, b"\0" * 16)
    )
    assert secret not in caplog.text


def test_expiry_and_revocation_apply_on_the_next_request(tmp_path: Path) -> None:
    with access_client(tmp_path) as c:
        expiring, revoked, other = (
            _key(c, "reader", "a", expires_days=1),
            _key(c, "reader", "b"),
            _key(c, "reader", "c"),
        )
        for k in (expiring, revoked):
            assert c.get("/api/v1/whoami", headers={"X-API-Key": k}).status_code == 200
        with sqlite3.connect(tmp_path / "radclip.db") as con:  # the clock moves past the expiry
            past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
            con.execute("update api_keys set expires_at = ? where name = 'a'", (past,))
        assert store(c).revoke("b") and not store(c).revoke("b")
        assert c.get("/api/v1/whoami", headers={"X-API-Key": expiring}).status_code == 401
        assert c.get("/api/v1/whoami", headers={"X-API-Key": revoked}).status_code == 401
        assert c.get("/api/v1/whoami", headers={"X-API-Key": other}).status_code == 200
        statuses = {k.name: k.status(dt.datetime.now(dt.UTC)) for k in store(c).list()}
        assert statuses == {"a": "expired", "b": "revoked", "c": "active"}
        last_used = {k.name: k.last_used_at for k in store(c).list()}
        assert last_used["c"] is not None and last_used["b"] is not None


def test_open_mode_is_loopback_only_and_ends_with_the_first_key(tmp_path: Path) -> None:
    with access_client(tmp_path) as c:
        assert c.get("/api/v1/whoami").json()["name"] == "local"
        _key(c, "admin")
        assert c.get("/api/v1/whoami").status_code == 401
    with access_client(tmp_path / "other", client=("10.1.2.3", 4000)) as c:
        r = c.get("/api/v1/whoami")
        assert (
            r.status_code == 401
            and "loopback" in r.json()["detail"]
            and "radclip keys create" in r.json()["fix"]
        )
        assert c.get("/healthz").status_code == 200


def test_empty_bootstrap_key_is_refused_at_start_up(tmp_path: Path) -> None:
    from radclip.settings import SettingsError

    for empty in ("", "   "):
        with pytest.raises(SettingsError, match="RADCLIP_API_KEY.*empty"):
            make_settings(tmp_path, api_key=empty)


def test_non_loopback_bind_without_a_key_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from radclip.cli import main

    monkeypatch.setenv("RADCLIP_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'radclip.db'}"
    monkeypatch.setenv("RADCLIP_DATABASE_URL", url)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "radclip keys create --name NAME --role admin" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "ops", "--role", "admin", "--expires", "30"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("rck_")
    assert main(["keys", "list"]) == 0 and re.search(
        r"^ops\s+admin\s.*active$", capsys.readouterr().out, re.M
    )
    assert (
        main(["keys", "create", "--name", "ops", "--role", "reader"]) == 2
        and "already exists" in capsys.readouterr().err
    )
    from radclip.engine import db
    from radclip.engine.keys import KeyStore
    from radclip.service.auth import check_exposure

    engine = db.make_engine(url)
    check_exposure(make_settings(tmp_path, host="0.0.0.0"), KeyStore(engine))  # a key exists now: no refusal
    assert main(["keys", "revoke", "ops"]) == 0 and main(["keys", "revoke", "ops"]) == 1
    assert not [p for p in tmp_path.glob("radclip.db*") if key.encode() in p.read_bytes()]
    engine.dispose()
