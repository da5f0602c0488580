"""The OpenAPI document is the contract: schemathesis, every check and the stateful phase, finds 0 failures.

A real uvicorn server (tiny seeded models, a 12-image corpus) is started with a bootstrap key; the
test waits for the case index to finish warming, then runs the ``st`` CLI with ``--checks all`` over
the examples, coverage, fuzzing and stateful phases. Bounded by ``RADCLIP_CONTRACT_EXAMPLES`` (per
operation and phase; default keeps the test near a minute on 2 cores). The longer recorded run in
docs/reliability.md sets it higher and writes the JSON report to ``RADCLIP_CONTRACT_REPORT``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from radclip.service.background import BackgroundServer

KEY = "contract-test-bootstrap-key"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the one per-operation exception, and why
EXAMPLES = int(os.environ.get("RADCLIP_CONTRACT_EXAMPLES", "8"))
MAX_TIME_S = int(os.environ.get("RADCLIP_CONTRACT_MAX_TIME_S", "0"))  # 0: no time budget, examples only


@pytest.fixture(scope="module")
def keyed_server(tiny_triage_weights: Path, tiny_clip_weights: Path, tiny_corpus: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # fmt: skip
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    settings = load_settings(
        home=tmp_path_factory.mktemp("contract-home"), triage_model=str(tiny_triage_weights),
        clip_model=str(tiny_clip_weights), corpus=tiny_corpus, max_upload_mb=2, api_key=KEY,
        rate_limits="admin=0/1",  # unlimited: the fuzzer is one client sending thousands of requests
    )  # fmt: skip
    with BackgroundServer(create_app(settings)) as server:
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/readyz").json()["index"]["state"] != "ready":
            assert time.monotonic() < deadline, "index did not become ready"
            time.sleep(0.1)
        yield server


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if found is None:
        pytest.skip("schemathesis CLI `st` not installed: pip install -e '.[dev]'")
    return found


@pytest.mark.timeout(max(600, MAX_TIME_S + 420))  # the recorded long run outlasts the suite's 600 s
def test_schemathesis_all_checks_stateful_finds_no_failures(keyed_server: Any, tmp_path: Path) -> None:
    report = Path(os.environ.get("RADCLIP_CONTRACT_REPORT", tmp_path / "st.json")).resolve()
    cmd = [
        _st(), "--config-file", str(CONFIG), "run", f"{keyed_server.url}/openapi.json", "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES),
        "--header", f"X-API-Key: {KEY}", "--workers", "1", "--seed", "17", "--no-color",
        "--request-timeout", "120", "--suppress-health-check", "all", "--generation-database", "none",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    if MAX_TIME_S:
        cmd += ["--max-time", str(MAX_TIME_S)]
    # cwd: st keeps a crash cache in ./.schemathesis, which must not land in the repository
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=max(900, 2 * MAX_TIME_S), cwd=tmp_path)
    report.with_suffix(".log").write_text(run.stdout + run.stderr)  # the full findings, next to the report
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]


# -- the document itself (no models needed: an app over an empty ServiceState) -----------------
def _doc(tmp_path: Path) -> dict[str, Any]:
    from tests.service.access_helpers import access_client

    with access_client(tmp_path) as c:
        return c.get("/openapi.json").json()  # type: ignore[no-any-return]


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_error_answer_is_a_documented_problem(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    assert set(doc["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
        "fix",
    }
    for method, path, op in _operations(doc):
        codes = {int(c) for c in op["responses"]}
        if op["x-radclip-role"] != "public":
            assert {401, 403, 429} <= codes, (method, path, codes)
            assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
        if "requestBody" in op:
            assert {400, 413, 415, 422} <= codes, (method, path, codes)
        if "{" in path:
            assert 404 in codes, (method, path, codes)
        if path.startswith("/api/"):
            assert "Retry-After" in op["responses"]["503"]["headers"], (method, path)
        for code in (c for c in codes if c >= 400):
            content = op["responses"][str(code)]["content"]
            assert list(content) == ["application/problem+json"], (method, path, code, list(content))
            assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_binary_answers_and_request_constraints_are_in_the_schema(tmp_path: Path) -> None:
    from radclip.engine import registry
    from radclip.io.labels import NIH_LABELS

    doc = _doc(tmp_path)
    paths = doc["paths"]
    file_ok = paths["/api/v1/studies/{study_id}/file"]["get"]["responses"]["200"]["content"]
    assert set(file_ok) == {"application/dicom", "image/png", "image/jpeg"}
    assert set(paths["/api/v1/studies/{study_id}/thumbnail"]["get"]["responses"]["200"]["content"]) == {
        "image/png"
    }
    body = doc["components"]["schemas"]["RegisterConditionRequest"]["properties"]
    assert (
        body["name"]["pattern"] == registry.NAME_RE.pattern and body["name"]["maxLength"] == registry.MAX_NAME
    )
    assert tuple(body["category"]["enum"]) == registry.CATEGORIES
    assert body["prompts"]["uniqueItems"] is True and body["prompts"]["maxItems"] == registry.MAX_PROMPTS
    (label,) = paths["/api/v1/explain"]["post"]["parameters"]
    assert tuple(label["schema"]["enum"]) == NIH_LABELS


def test_undeclared_methods_get_405_with_every_allowed_method(tmp_path: Path) -> None:
    from tests.service.access_helpers import access_client

    with access_client(tmp_path) as c:
        # GET /api/v1/studies and POST /api/v1/studies live in two routers; Starlette named only one
        r = c.request("OPTIONS", "/api/v1/studies")
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST", r.headers
        assert r.headers["content-type"] == "application/problem+json"
        r = c.request("TRACE", "/api/v1/conditions/effusion")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE"


def test_a_503_while_the_index_warms_says_when_to_retry(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tests.service.access_helpers import access_client

    with access_client(tmp_path) as c:
        state = c.app.state.radclip
        state.index = SimpleNamespace(key=None)
        state.warmup.state, state.warmup.total = "warming", 12
        r = c.get("/api/v1/studies")
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        state.warmup.state, state.warmup.detail = "failed", "FileNotFoundError: /srv/secret/corpus"
        r = c.get("/api/v1/studies")
        assert r.status_code == 503 and "retry-after" not in r.headers and "/srv/secret" not in r.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/retrieve", {"query": "pleural effusion", "top_k": True}),  # found by the 10k-case run (ST201)
        ("/api/v1/retrieve", {"query": "pleural effusion", "top_k": "5"}),
        ("/api/v1/retrieve", {"query": "pleural effusion", "top_k": 5.5}),
        ("/api/v1/register-condition", {"name": "rib_fracture", "prompts": ["rib fracture"], "category": 3}),
        ("/api/v1/feedback", {"upload_sha256": "0" * 64, "findings": {"Effusion": "yes"}}),
    ],
)
def test_json_bodies_of_the_wrong_json_type_are_refused_as_the_schema_says(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    """Lax pydantic coerced true -> 1 and "5" -> 5, so the service accepted what its schema forbids."""
    from tests.service.access_helpers import access_client

    with access_client(tmp_path) as c:
        r = c.post(path, json=body)
    assert r.status_code == 422, (path, body, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
