"""The UI under the Content-Security-Policy (no 'unsafe-inline'), with a key prompt, hiding what the role may not do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.service.conftest import LiveServer

# Records every CSP violation the page reports (a violation also logs a console error, which the
# page fixture fails on; this makes the assertion explicit).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture()
def strict_page(browser: Any) -> Iterator[Any]:
    """A page that enforces the CSP (the shared ``page`` fixture bypasses it for Playwright's eval-based waits).

    Only selector waits here: ``wait_for_function`` evaluates strings, which the policy rightly blocks.
    """
    context = browser.new_context(viewport={"width": 1480, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.allowed_errors = []  # type: ignore[attr-defined]
    yield pg
    context.close()
    unexpected = [e for e in errors if not any(a in e for a in pg.allowed_errors)]  # type: ignore[attr-defined]
    assert not unexpected, f"browser console errors (CSP violations show here): {unexpected}"


@pytest.fixture(scope="module")
def keyed_server(
    ui_triage_weights: Path, tiny_clip_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("sec_home"), triage_model=str(ui_triage_weights),
                             clip_model=str(tiny_clip_weights), index_on_start=False)  # fmt: skip
    app = create_app(settings)
    with LiveServer(app) as server:
        keys = app.state.radclip_access.keys
        server.keys = {role: keys.create(f"ui-{role}", role) for role in ("reader", "admin")}  # type: ignore[attr-defined]
        yield server


def _open_with_key(page: Any, server: Any, key: str) -> None:
    page.add_init_script(RECORD_VIOLATIONS + f"sessionStorage.setItem('radclip.apiKey', {json.dumps(key)});")
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1'][data-role]")


def test_page_is_served_with_the_hardening_headers(keyed_server: Any) -> None:
    r = httpx.get(keyed_server.url + "/")
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    assert (
        "access-control-allow-origin"
        not in httpx.get(keyed_server.url + "/healthz", headers={"Origin": "https://evil.example"}).headers
    )


def test_reader_works_under_the_csp_and_sees_no_admin_controls(
    strict_page: Any, keyed_server: Any, sample_images: dict[str, Path]
) -> None:
    page = strict_page
    _open_with_key(page, keyed_server, keyed_server.keys["reader"])
    assert page.get_attribute("body", "data-role") == "reader"
    assert page.inner_text("#key-button") == "Key: ui-reader (reader)"
    page.set_input_files(
        "#file-input", str(sample_images["png"])
    )  # decode, pixels, triage, CAM: under the policy
    page.locator("#triage-list .finding").nth(13).wait_for(timeout=60_000)
    page.wait_for_selector("body[data-cam-label]", timeout=30_000)
    page.click("#tab-conditions")
    page.wait_for_selector("#conditions-table tbody tr")
    assert page.locator("#register-form").is_hidden()
    assert (
        page.locator("#conditions-table .retire").count() > 0
        and page.locator("#conditions-table .retire").first.is_hidden()
    )
    assert page.evaluate("window.__csp") == []


def test_admin_sees_the_admin_controls(strict_page: Any, keyed_server: Any) -> None:
    page = strict_page
    _open_with_key(page, keyed_server, keyed_server.keys["admin"])
    page.click("#tab-conditions")
    page.wait_for_selector("#conditions-table tbody tr")
    assert (
        page.locator("#register-form").is_visible()
        and page.locator("#conditions-table .retire").first.is_visible()
    )
    assert page.evaluate("window.__csp") == []


def test_without_a_key_the_page_asks_for_one(strict_page: Any, keyed_server: Any) -> None:
    page = strict_page
    page.allowed_errors.append(
        "the server responded with a status of 401"
    )  # whoami before the key is entered
    page.goto(keyed_server.url + "/")
    page.wait_for_selector("#key-button", state="visible")
    page.click("#key-button")
    page.fill("#key-input", keyed_server.keys["reader"])
    with page.expect_navigation():
        page.click("#key-form button")
    page.wait_for_selector("body[data-role='reader']")
    assert page.evaluate("sessionStorage.getItem('radclip.apiKey')") == keyed_server.keys["reader"]
    assert page.evaluate("localStorage.length") == 0  # the key is kept for this tab only


def test_offline_api_docs_render_under_the_csp(strict_page: Any, keyed_server: Any) -> None:
    page = strict_page
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(keyed_server.url + "/docs")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#docs-table tbody tr").count() >= 20
    assert page.locator("#docs-table tbody tr[data-role='ingest']").count() == 1  # POST /api/v1/studies
    assert page.evaluate("window.__csp") == []
