"""The audit trail: an entry per patient-linked request, hash chain verified and tampering found, export, 503 on failure."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.service.access_helpers import access_client, store


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8), mode="L").save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _trail(client: Any) -> Any:
    return client.app.state.radclip_access.audit


def _rows(home: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "radclip.db") as con:
        return con.execute(
            "select key_name, role, client, action, study, outcome from audit_log order by id"
        ).fetchall()


def test_patient_linked_requests_are_recorded_with_pseudonyms_only(tmp_path: Path) -> None:
    with access_client(tmp_path) as c:
        reader, ingest = store(c).create("ward-2", "reader"), store(c).create("pacs", "ingest")
        assert (
            c.post(
                "/api/v1/pixels",
                files={"file": ("x.png", _png(), "image/png")},
                headers={"X-API-Key": reader},
            ).status_code
            == 200
        )
        c.get("/api/v1/studies/1.2.840.99-MRN-4471", headers={"X-API-Key": reader})
        c.post(
            "/api/v1/studies?study_id=MRN-4471",
            content=_png(),
            headers={"X-API-Key": ingest, "Content-Type": "image/png"},
        )
        c.get("/api/v1/studies/1.2.840.99-MRN-4471")  # no key: refused, and still recorded
        c.get("/api/v1/whoami", headers={"X-API-Key": reader})  # not patient-linked: not recorded
        c.get("/api/v1/conditions", headers={"X-API-Key": reader})
    rows = _rows(tmp_path)
    assert [(r[0], r[1], r[3], r[5]) for r in rows] == [
        ("ward-2", "reader", "view-pixels", 200),
        ("ward-2", "reader", "view-study", 503),  # no index in this app: the outcome is what the caller got
        ("pacs", "ingest", "ingest", 503),
        ("-", "none", "view-study", 401),
    ]
    assert all(r[2] == "127.0.0.1" for r in rows)
    studies = [r[4] for r in rows]
    assert (
        studies[0] is None
        and studies[1] == studies[3]
        and studies[1].startswith("study-")
        and studies[2].startswith("study-")
    )
    assert studies[1] != studies[2]
    dump = "\n".join(sqlite3.connect(tmp_path / "radclip.db").iterdump())
    assert "MRN-4471" not in dump


def test_chain_verifies_and_tampering_is_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main

    with access_client(tmp_path) as c:
        for _ in range(5):
            c.post("/api/v1/pixels", files={"file": ("x.png", _png(), "image/png")})
        result = _trail(c).verify()
        assert result.ok and result.entries == 5
    db_url = f"sqlite:///{tmp_path / 'radclip.db'}"
    assert main(["audit", "--database", db_url, "verify"]) == 0 and "5 entries" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "radclip.db") as con:
        con.execute("update audit_log set outcome = 403 where id = 3")
    assert main(["audit", "--database", db_url, "verify"]) == 1
    assert "entry 3: its fields do not match" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "radclip.db") as con:
        con.execute("update audit_log set outcome = 200 where id = 3")
        con.execute("delete from audit_log where id = 2")
    assert main(["audit", "--database", db_url, "verify"]) == 1
    assert "entry 3: links to" in capsys.readouterr().err


def test_export_csv_and_jsonl_by_time_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radclip.cli import main
    from radclip.engine.audit import AuditEntry

    with access_client(tmp_path) as c:
        trail = _trail(c)
        for day in (1, 2, 3):
            trail.append(
                AuditEntry(
                    f"2026-12-0{day}T10:00:00.000000Z",
                    "ward-1",
                    "reader",
                    "10.0.0.7",
                    "screen",
                    "study-ab",
                    200,
                )
            )
    db_url = f"sqlite:///{tmp_path / 'radclip.db'}"
    assert (
        main(
            [
                "audit",
                "--database",
                db_url,
                "export",
                "--since",
                "2026-12-02",
                "--until",
                "2026-12-03",
                "--format",
                "jsonl",
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (
        [x["at"] for x in lines] == ["2026-12-02T10:00:00.000000Z"]
        and lines[0]["key_name"] == "ward-1"
        and len(lines[0]["entry_hash"]) == 64
    )
    out = tmp_path / "trail.csv"
    assert main(["audit", "--database", db_url, "export", "--format", "csv", "--out", str(out)]) == 0
    text = out.read_text().splitlines()
    assert (
        text[0] == "id,at,key_name,role,client,action,study,outcome,prev_hash,entry_hash" and len(text) == 4
    )


def test_an_audit_write_failure_fails_the_request_with_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    with access_client(tmp_path) as c:

        def broken(entry: Any) -> str:
            raise OperationalError(
                "INSERT INTO audit_log VALUES (?)", ("study-secret-param",), Exception("disk I/O error")
            )

        monkeypatch.setattr(_trail(c), "append", broken)
        r = c.post("/api/v1/pixels", files={"file": ("x.png", _png(), "image/png")})
        assert r.status_code == 503 and r.json()["type"].endswith("audit-unavailable")
        assert r.headers["content-type"] == "application/problem+json" and "x-image-width" not in r.headers
        assert c.get("/api/v1/whoami").status_code == 200  # not patient-linked: unaffected
