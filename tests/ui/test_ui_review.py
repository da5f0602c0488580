"""The discordance review page in Chromium: lists what the API lists, shows both versions' heat maps, stores a verdict.

Server: the shipped triage model in production and the same network with its head negated as the
shadow (a real, clearly different second version), a tiny image-text model, open loopback mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from tests.ops.conftest import discordant_head_weights  # noqa: F401 (fixture)
from tests.ops.ops_helpers import SHIPPED, png
from tests.ui.conftest import ARTIFACTS, DOCS_SHOTS, update_docs


def _post(url: str, path: str, **kw: Any) -> httpx.Response:
    r = httpx.post(url + path, timeout=120, **kw)
    assert r.status_code in (200, 201), r.text
    return r


@pytest.fixture(scope="module")
def review_server(
    discordant_head_weights: Path,  # noqa: F811 (the fixture imported above)
    tiny_clip_weights: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    from radclip.service.app import create_app
    from radclip.service.background import BackgroundServer
    from radclip.settings import load_settings

    home = tmp_path_factory.mktemp("review_home")
    settings = load_settings(home=home, triage_model=SHIPPED, clip_model=str(tiny_clip_weights), backend="pytorch",
                             index_on_start=False, corpus=home / "none")  # fmt: skip
    app = create_app(settings)
    with BackgroundServer(app) as srv:
        ops = app.state.radclip_ops
        v2 = _post(srv.url, "/api/v1/models", json={"path": str(discordant_head_weights)}).json()["changed"][
            0
        ]["version"]
        _post(srv.url, f"/api/v1/models/{SHIPPED}@{v2}/shadow")
        for seed in range(7000, 7004):  # production and the shadow score these
            _post(srv.url, "/api/v1/screen", content=png(seed), headers={"Content-Type": "image/png"})
        ops.shadow.drain()
        _post(srv.url, f"/api/v1/models/{SHIPPED}/rollback")  # production alone from here
        _post(srv.url, "/api/v1/screen", content=png(7100), headers={"Content-Type": "image/png"})
        ops.shadow.drain()
        key = hashlib.sha256(png(7100)).hexdigest()
        (pred,) = ops.shadow.predictions.for_studies([f"sha256:{key}"])
        _post(
            srv.url,
            "/api/v1/feedback",
            json={"upload_sha256": key, "findings": {"Effusion": pred.scores["Effusion"] < 0.5}},
        )
        srv.ops = ops  # type: ignore[attr-defined]
        yield srv


def _heatmaps_load(page: Any, study_key: str, finding: str) -> None:
    """Both versions' heat maps of this row are decoded images (naturalWidth > 0), production's first."""
    sel = f'#review-table tbody tr[data-study="{study_key}"][data-finding="{finding}"] img.heatmap'
    page.locator(sel).first.scroll_into_view_if_needed()  # they load lazily, when the row is in view
    page.wait_for_function(
        "sel => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0); }",
        arg=sel,
        timeout=60_000,
    )
    roles = page.locator(sel).evaluate_all("imgs => imgs.map((i) => [i.dataset.role, i.naturalWidth])")
    assert roles == [["production", 128], ["shadow", 128]], roles


def test_review_page_lists_discordant_findings_and_records_a_verdict(
    browser: Any, review_server: Any
) -> None:
    # The page's Content-Security-Policy stays enforced here (no bypass): the page must need no inline code.
    context = browser.new_context(viewport={"width": 1480, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    api = httpx.get(review_server.url + "/api/v1/review/discordant", timeout=60).json()
    expected = {(s["study_key"], f["finding"]) for s in api["discordant"] for f in s["findings"]}
    assert len({k for k, _ in expected}) == 5, (
        "4 studies with a negated-head shadow + 1 with contrary feedback"
    )
    page.goto(review_server.url + "/ui/review.html")
    page.wait_for_selector("#review-table tbody tr")
    rows = page.locator("#review-table tbody tr")
    shown = {(r.get_attribute("data-study"), r.get_attribute("data-finding")) for r in rows.all()}
    assert shown == expected
    assert (
        page.locator("#review-summary")
        .inner_text()
        .startswith(f"5 discordant of {api['studies_scanned']} recent studies")
    )
    feedback_rows = page.locator("#review-table tbody tr", has_text="feedback disagrees")
    assert feedback_rows.count() == 1 and "versions disagree" not in feedback_rows.inner_text()
    first = api["discordant"][-1]  # oldest study: negated-head shadow beside production
    f0 = first["findings"][0]
    row = page.locator(
        f'#review-table tbody tr[data-study="{first["study_key"]}"][data-finding="{f0["finding"]}"]'
    )
    prod = next(c for c in f0["calls"] if c["role"] == "production")
    assert f"{prod['probability']:.3f}" in row.locator("td").nth(3).inner_text()
    assert feedback_rows.locator("td.heatmaps").inner_text() == "one version scored this study"
    newest_pair = api["discordant"][1]  # below the feedback-only study: in view at the top of the page
    _heatmaps_load(page, newest_pair["study_key"], newest_pair["findings"][0]["finding"])
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = page.screenshot(path=str(ARTIFACTS / "review.png"))
    if update_docs():
        (DOCS_SHOTS / "review.png").write_bytes(shot)
    _heatmaps_load(page, first["study_key"], f0["finding"])  # the oldest study, loaded when scrolled to
    row.locator("button[data-verdict=present]").click()
    expect(row.locator(".recorded")).to_have_text("present · created")
    labels = review_server.ops.feedback.window(10).as_mapping()
    assert labels[first["study_key"]][f0["finding"]] == 1.0  # the verdict is the reader's confirmed finding
    context.close()
    assert errors == [], errors
