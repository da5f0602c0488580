"""Each UI workflow clicked through in headless Chromium, asserting what a radiologist would see."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.ui.conftest import LiveServer, screenshot

PCT = re.compile(r"^\d{1,3}%$")
CANVAS_STATS = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let opaque = 0, sum = 0;
  for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) { opaque++; sum += d[i - 3] + d[i - 2] + d[i - 1]; } }
  return {w: c.width, h: c.height, opaque, mean: opaque ? sum / opaque / 3 : 0,
          opacity: getComputedStyle(c).opacity, visibility: getComputedStyle(c).visibility};
}"""
CENTRE_PIXEL = """() => { const c = document.getElementById('image-canvas');
  return c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data[0]; }"""


def open_page(page: Any, server: Any) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_function("document.querySelector('#status-pill').textContent.includes('index')")


def upload(page: Any, path: Path) -> None:
    page.set_input_files("#file-input", str(path))
    page.wait_for_function("document.querySelectorAll('#triage-list .finding').length === 14", timeout=60_000)


def wait_cam(page: Any, label: str | None = None) -> dict[str, Any]:
    cond = "document.body.dataset.camLabel" + (f" === {json.dumps(label)}" if label else "")
    page.wait_for_function(cond, timeout=30_000)
    return page.evaluate(CANVAS_STATS, "cam-canvas")  # type: ignore[no-any-return]


def test_study_upload_shows_image_context_and_triage(page: Any, ui_server: Any, sample_images: dict[str, Path]) -> None:
    open_page(page, ui_server)
    upload(page, sample_images["dicom"])
    # The image is drawn (not blank) and the DICOM header's context is shown.
    stats = page.evaluate(CANVAS_STATS, "image-canvas")
    assert stats["w"] > 100 and stats["opaque"] == stats["w"] * stats["h"] and 5 < stats["mean"] < 250
    context = dict(zip(page.locator("#study-context dt").all_inner_texts(), page.locator("#study-context dd").all_inner_texts(), strict=True))
    assert context["Format"] in ("dicom", "png")
    if sample_images["dicom"].suffix == ".dcm":
        assert context["Sex"] in ("M", "F") and context["Age"].endswith(" y") and context["View"] in ("PA", "AP")
    # 14 findings with calibrated %, sorted, each with a band that contains it.
    pcts = page.locator("#triage-list .pct").all_inner_texts()
    assert len(pcts) == 14 and all(PCT.match(p) for p in pcts)
    values = [int(p[:-1]) for p in pcts]
    assert values == sorted(values, reverse=True)
    bands = page.locator("#triage-list .range").all_inner_texts()
    for v, band in zip(values, bands, strict=True):
        lo, hi = (int(x) for x in re.findall(r"\d+", band))
        assert lo - 1 <= v <= hi + 1
    urgent_rows = page.locator("#triage-list .finding.urgent")
    for i in range(urgent_rows.count()):
        assert "URGENT" in urgent_rows.nth(i).inner_text()
    # Window/level: dragging changes the displayed pixels; double-click restores them.
    before = page.evaluate(CENTRE_PIXEL)
    box = page.locator("#stage").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 120, cy - 80, steps=4)
    page.mouse.up()
    page.wait_for_function("document.getElementById('wl-readout').textContent !== 'W 100 · L 50'")
    assert page.evaluate(CENTRE_PIXEL) != before
    readout = page.inner_text("#wl-readout")
    w, level = (int(x) for x in re.findall(r"\d+", readout))
    assert w == 70 and level == 70
    wait_cam(page)
    screenshot(page, "study-triage")
    page.dblclick("#stage")
    assert page.inner_text("#wl-readout") == "W 100 · L 50" and page.evaluate(CENTRE_PIXEL) == before


def test_explanation_heatmap_follows_selected_finding(page: Any, ui_server: Any, sample_images: dict[str, Path]) -> None:
    open_page(page, ui_server)
    upload(page, sample_images["png"])
    labels = page.locator("#triage-list .finding").evaluate_all("els => els.map(e => e.dataset.label)")
    first = wait_cam(page, labels[0])
    assert 0.01 * first["w"] * first["h"] < first["opaque"] < first["w"] * first["h"] and first["mean"] > 10  # heatmap drawn
    page.keyboard.press("j")
    second = wait_cam(page, labels[1])
    assert second["opaque"] > 0 and page.locator("#triage-list .finding[aria-current=true]").get_attribute("data-label") == labels[1]
    assert labels[1].replace("_", " ") in page.inner_text("#explain-caption")
    page.keyboard.press("k")
    wait_cam(page, labels[0])
    page.locator("#opacity").fill("80")
    assert page.evaluate(CANVAS_STATS, "cam-canvas")["opacity"] == "0.8" and page.inner_text("#opacity-value") == "80%"
    screenshot(page, "explanation")
    page.keyboard.press("o")  # compare with the plain image
    assert page.evaluate(CANVAS_STATS, "cam-canvas")["visibility"] == "hidden"
    page.keyboard.press("o")
    assert page.evaluate(CANVAS_STATS, "cam-canvas")["visibility"] == "visible"
    page.select_option("#explain-select", index=5)
    wait_cam(page, labels[5])


def test_screening_ranks_all_conditions_with_category_filter(page: Any, ui_server: Any, sample_images: dict[str, Path]) -> None:
    active = httpx.get(f"{ui_server.url}/api/v1/conditions").json()
    open_page(page, ui_server)
    upload(page, sample_images["dicom"])
    page.keyboard.press("2")
    rows = page.locator("#screen-table tbody tr")
    assert rows.count() == len(active) > 5
    # The ranking rule (engine/screening.rank_findings): suppressed rows last, calibrated before uncalibrated
    # ('*'), highest confidence first within each group.
    cells = page.locator("#screen-table tbody td.conf-cell .num").all_inner_texts()
    suppressed = [c == "suppressed" for c in page.locator("#screen-table tbody tr").evaluate_all("rs => rs.map(r => r.className)")]
    parsed = [re.match(r"^(\d{1,3})%(\*?)$", t) for t in cells]
    assert len(parsed) == len(active) and all(parsed)
    keys = [(sup, m.group(2) == "*", -int(m.group(1))) for sup, m in zip(suppressed, parsed, strict=True)]
    assert keys == sorted(keys)
    assert page.locator("#rule-notes li").count() >= 1
    assert re.match(rf"^{len(active)} conditions, highest confidence first", page.inner_text("#screen-meta"))
    categories = sorted({c["category"] for c in active})
    page.select_option("#category-filter", categories[0])
    shown = page.locator("#screen-table tbody tr td:nth-child(3)").all_inner_texts()
    assert shown and set(shown) == {categories[0]} and len(shown) == sum(c["category"] == categories[0] for c in active)
    page.select_option("#category-filter", "")
    screenshot(page, "screening")


def test_case_search_text_image_and_open_result(page: Any, ui_server: Any, ui_corpus: Path) -> None:
    open_page(page, ui_server)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search-input"
    page.select_option("#search-k", "8")
    page.fill("#search-input", "left pleural effusion in elderly patient")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#case-grid .case').length === 8")
    assert re.match(r"^8 similar cases for .*left pleural effusion.* · \d+ ms$", page.inner_text("#search-meta"))
    page.wait_for_function("[...document.querySelectorAll('#case-grid img')].every(i => i.complete && i.naturalWidth > 0)")
    sims = [float(re.search(r"sim (-?[\d.]+)", t).group(1)) for t in page.locator("#case-grid .sim").all_inner_texts()]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    screenshot(page, "case-search")
    # Open a case: it becomes the study (image + triage), then "find similar" ranks it first.
    target = page.locator("#case-grid .case").nth(2).get_attribute("data-study-id")
    page.locator("#case-grid .case").nth(2).click()
    page.wait_for_function(f"document.getElementById('study-name').textContent === {json.dumps(target)}")
    page.wait_for_function("document.querySelectorAll('#triage-list .finding').length === 14")
    assert page.get_attribute("#tab-triage", "aria-selected") == "true"
    if ui_corpus.suffix == ".csv":  # real studies: the index's view and recorded findings join the context
        context = dict(zip(page.locator("#study-context dt").all_inner_texts(),
                           page.locator("#study-context dd").all_inner_texts(), strict=True))  # fmt: skip
        assert context["View"] in ("PA", "AP") and context["Recorded"] not in ("", "—")
    page.keyboard.press("f")
    page.wait_for_function("document.getElementById('search-meta').textContent.includes('the open study')")
    first = page.locator("#case-grid .case").first
    assert first.get_attribute("data-study-id") == target and "sim 1.000" in first.inner_text()


def test_pick_from_corpus_and_drag_and_drop_open_a_study(page: Any, ui_server: Any) -> None:
    studies = httpx.get(f"{ui_server.url}/api/v1/studies").json()
    assert studies["total"] == 16
    open_page(page, ui_server)
    page.wait_for_function("document.querySelectorAll('#corpus-list option').length === 16")
    study_id = studies["items"][3]["study_id"]
    page.fill("#corpus-input", study_id)
    page.click("#corpus-open")
    page.wait_for_function("document.querySelectorAll('#triage-list .finding').length === 14")
    assert page.inner_text("#study-name") == study_id
    # Drag-and-drop of a file onto the image area opens it too.
    other = studies["items"][5]["study_id"]
    transfer = page.evaluate_handle("""async (id) => {
        const blob = await (await fetch(`/api/v1/studies/${id}/file`)).blob();
        const dt = new DataTransfer();
        dt.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
        return dt; }""", other)
    page.dispatch_event("#stage", "drop", {"dataTransfer": transfer})
    page.wait_for_function("document.getElementById('study-name').textContent === 'dropped.png'"
                           " && document.getElementById('stage-busy').hidden && window.radclip.findings.length === 14")


def test_register_condition_appears_in_screening_then_history_and_retire(page: Any, ui_server: Any, sample_images: dict[str, Path]) -> None:
    page.allowed_errors.append("the server responded with a status of 422")  # the unknown category, on purpose
    open_page(page, ui_server)
    upload(page, sample_images["png"])
    page.keyboard.press("4")
    page.wait_for_selector("#conditions-table tbody tr")
    form = page.locator("#register-form")
    form.locator("input[name=name]").fill("sarcoidosis_ui")
    form.locator("input[name=category]").fill("interstitial")
    form.locator("input[name=synonyms]").fill("hilar lymphadenopathy, lofgren syndrome")
    form.locator("textarea[name=prompts]").fill("bilateral hilar lymphadenopathy\nperihilar nodular opacities")
    form.locator("button[type=submit]").click()
    # The server's problem+json is shown next to the form: what was wrong and how to fix it.
    error = page.locator("#register-error")
    error.wait_for()
    assert "category" in error.inner_text() and "'parenchymal'" in error.inner_text() and "Fix:" in error.inner_text()
    form.locator("input[name=category]").fill("parenchymal")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.getElementById('register-ok').textContent.includes('version 1')")
    assert "sarcoidosis_ui: registered" in page.inner_text("#register-ok")
    row = page.locator("#conditions-table tbody tr[data-name=sarcoidosis_ui]")
    assert row.locator("td").nth(2).inner_text() == "v1"
    # It is ranked in screening at once (the open study was re-screened).
    page.keyboard.press("2")
    page.wait_for_selector("#screen-table tbody tr[data-name=sarcoidosis_ui]")
    assert re.match(r"^\d{1,3}%\*?$", page.locator("#screen-table tbody tr[data-name=sarcoidosis_ui] td.conf-cell .num").inner_text())
    # A new version, then its history shows both.
    page.keyboard.press("4")
    form.locator("input[name=name]").fill("sarcoidosis_ui")
    form.locator("input[name=category]").fill("parenchymal")
    form.locator("textarea[name=prompts]").fill("bilateral hilar lymphadenopathy with perilymphatic nodules")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.getElementById('register-ok').textContent.includes('version 2')")
    row.get_by_role("button", name="History of sarcoidosis_ui").click()
    history = page.locator("ol.history li")
    history.first.wait_for()
    assert history.count() == 2 and history.nth(0).inner_text().startswith("v1 · superseded")
    screenshot(page, "conditions")
    # Retire (two-step) and it leaves screening; with "show retired" it is listed as retired.
    row.get_by_role("button", name="Retire sarcoidosis_ui").click()
    row.get_by_role("button", name="Confirm retiring sarcoidosis_ui").click()
    page.wait_for_function("document.getElementById('register-ok').textContent.startsWith('Retired')")
    page.wait_for_selector("#conditions-table tbody tr[data-name=sarcoidosis_ui]", state="detached")
    page.keyboard.press("2")
    page.wait_for_selector("#screen-table tbody tr[data-name=sarcoidosis_ui]", state="detached")
    page.keyboard.press("4")
    page.check("#show-retired")
    page.wait_for_selector("#conditions-table tbody tr.retired[data-name=sarcoidosis_ui]")


def test_service_status_shows_models_index_and_cache(page: Any, ui_server: Any) -> None:
    open_page(page, ui_server)
    page.keyboard.press("5")
    page.wait_for_selector("#status-list dd")
    values = dict(zip(page.locator("#status-list dt").all_inner_texts(), page.locator("#status-list dd").all_inner_texts(), strict=True))
    card = ui_server.state.triage.card
    assert values["Triage model"].startswith(f"{card.name} @ {card.version}")
    assert values["Case index"].startswith("ready · 16/16 (100%)")
    assert re.match(r"^\d{1,3}% of \d+ lookups", values["Text cache hit rate"])
    assert "index 16 studies" in page.inner_text("#status-pill")
    screenshot(page, "service-status")


def test_warming_index_shows_progress_then_results(gated_server: Any, page: Any) -> None:
    # gated_server first: set up before the page, torn down after it, so the page never polls a stopped server.
    server, permits = gated_server
    page.allowed_errors.append("status of 503")  # the browser logs the deliberate 503 of /retrieve while warming
    open_page(page, server)
    page.wait_for_function("document.getElementById('status-pill').textContent.includes('index warming 0/16')")
    page.keyboard.press("3")
    page.fill("#search-input", "cardiomegaly")
    page.keyboard.press("Enter")
    page.wait_for_selector("#warming:visible")
    assert "0 of 16 studies embedded" in page.inner_text("#warming-text")
    permits.release(2)  # two batches of 4: the page follows the progress by polling /readyz
    page.wait_for_function("document.getElementById('warming-text').textContent.includes('8 of 16')", timeout=30_000)
    assert page.evaluate("document.getElementById('warming-progress').value") == 8
    assert "index warming 8/16" in page.inner_text("#status-pill")
    assert page.locator("#search-error").is_hidden()  # progress, not an error
    screenshot(page, "case-search-warming")
    permits.release(100)
    page.wait_for_function("document.querySelectorAll('#case-grid .case').length === 12", timeout=60_000)
    assert page.locator("#warming").is_hidden() and "index 16 studies" in page.inner_text("#status-pill")


def test_errors_are_readable_and_help_lists_shortcuts(page: Any, ui_server: Any, sample_images: dict[str, Path]) -> None:
    page.allowed_errors.append("the server responded with a status of 415")  # the corrupt upload, on purpose
    open_page(page, ui_server)
    page.set_input_files("#file-input", str(sample_images["bad"]))
    err = page.locator("#study-error")
    err.wait_for()
    text = err.inner_text()
    assert "Corrupt image" in text or "Not an image" in text or "Unsupported" in text
    assert "Fix: send a single-frame chest radiograph" in text
    page.keyboard.press("3")
    page.click("#search-form button[type=submit]")
    assert "Empty query" in page.inner_text("#search-error")
    page.keyboard.press("?")
    help_dialog = page.locator("#help")
    help_dialog.wait_for()
    keys = help_dialog.inner_text()
    assert "next finding" in keys and "previous finding" in keys and "window / level" in keys
    screenshot(page, "help")
    page.keyboard.press("Escape")
    assert not page.evaluate("document.getElementById('help').open")


def test_page_exposes_what_the_ui_benchmark_reads(page: Any, ui_server: Any, sample_images: dict[str, Path]) -> None:
    """benchmarks/ui_bench.py times the page (paint entries, ``lastStudyMs``); here: those exist and follow each study."""
    open_page(page, ui_server)
    paint = page.evaluate("performance.getEntriesByType('paint').map(e => e.name)")
    assert "first-contentful-paint" in paint
    assert page.evaluate("window.radclip.lastStudyMs") is None  # no study opened yet
    for _ in range(2):
        page.evaluate("document.querySelector('#triage-list').replaceChildren(); window.radclip.lastStudyMs = null")
        upload(page, sample_images["dicom"])
        page.wait_for_function("window.radclip.lastStudyMs > 0")  # set once image, findings and screening show
        assert page.locator("#triage-list .finding").count() == 14


@pytest.mark.parametrize("asset", ["../service/app.py", "..%2Fservice%2Fapp.py", "js/../../settings.py"])
def test_ui_assets_cannot_escape_the_web_folder(ui_server: Any, asset: str) -> None:
    r = httpx.get(f"{ui_server.url}/ui/{asset}")
    assert r.status_code == 404 and "def " not in r.text
    assert httpx.get(f"{ui_server.url}/api/v1/studies/does-not-exist/file").status_code == 404


def test_api_key_prompt_when_the_service_requires_one(page: Any, ui_triage_weights: Path, tiny_clip_weights: Path,
                                                      sample_images: dict[str, Path], tmp_path: Path) -> None:  # fmt: skip
    from radclip.service.app import create_app
    from radclip.settings import load_settings

    page.allowed_errors.append("the server responded with a status of 401")  # before the key is entered, on purpose
    settings = load_settings(home=tmp_path / "home", triage_model=str(ui_triage_weights), clip_model=str(tiny_clip_weights),
                             api_key="k-ui-123", index_on_start=False)  # fmt: skip
    with LiveServer(create_app(settings)) as server:
        open_page(page, server)  # the page and /readyz need no key
        page.set_input_files("#file-input", str(sample_images["png"]))
        page.locator("#study-error").wait_for()
        assert "Unauthorized" in page.inner_text("#study-error") and "X-API-Key" in page.inner_text("#study-error")
        page.click("#key-button")
        page.fill("#key-input", "k-ui-123")
        with page.expect_navigation():
            page.click("#key-form button")
        page.wait_for_selector("body[data-ready='1']")
        upload(page, sample_images["png"])
        assert page.locator("#study-error").is_hidden()
        page.goto("about:blank")  # stop the page's polling before this test's server goes away
