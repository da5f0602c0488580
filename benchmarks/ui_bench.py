"""Benchmark the web UI in headless Chromium: first paint of ``/`` and study -> screening time.

Bounded: one page load and ``--uploads`` uploads of one study, then it stops. Starts ``radclip serve``
as its own process with the configured (by default embedded) models and a temp state directory,
drives Debian's Chromium through Playwright and reads the Performance API (paint entries, the
navigation entry) and ``window.radclip.lastStudyMs`` (set by the page when a study's image,
findings and screening are all shown).

    .venv/bin/python benchmarks/ui_bench.py                 # the real DICOM when the shared data is present
    .venv/bin/python benchmarks/ui_bench.py --uploads 5

Writes benchmarks/results/ui_bench.json and prints it. (The UI tests check the page works; they
time nothing.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

from service_bench import ServeProcess  # benchmarks/service_bench.py (scripts run from this folder's path)

OUT = Path(__file__).with_name("results") / "ui_bench.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
REAL_DICOM = "dicom/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
PAINT = "Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))"


def _study_file(settings: Any) -> Path:
    """The real 1024x1024 DICOM when the shared data holds it, else a synthetic 256x256 PNG."""
    dicom = Path(settings.data_root) / REAL_DICOM
    if dicom.is_file():
        return dicom
    import numpy as np
    from PIL import Image

    path = Path(tempfile.mkdtemp(prefix="radclip-ui-bench-")) / "study.png"
    Image.fromarray((np.random.default_rng(0).random((256, 256)) * 255).astype("uint8"), mode="L").save(path)
    return path


def measure(url: str, study: Path, uploads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (scripts/ensure_apt.sh chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1480, "height": 900}).new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        paint = page.evaluate(PAINT)
        nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        runs = []
        for _ in range(uploads):
            page.evaluate(
                "document.querySelector('#triage-list').replaceChildren(); window.radclip.lastStudyMs = null"
            )
            page.set_input_files("#file-input", str(study))
            page.wait_for_function("window.radclip.lastStudyMs > 0", timeout=120_000)
            runs.append(round(page.evaluate("window.radclip.lastStudyMs"), 1))
        browser.close()
    return {
        "first_paint_ms": paint.get("first-paint"),
        "first_contentful_paint_ms": paint.get("first-contentful-paint"),
        "dom_content_loaded_ms": round(nav["domContentLoadedEventEnd"], 1),
        "study_to_screening_ms": runs,
        "study_to_screening_median_ms": statistics.median(runs) if runs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--uploads", type=int, default=3, help="uploads of the study to time (after the page load)"
    )
    args = parser.parse_args()
    from radclip.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="radclip-ui-bench-"))
    settings = load_settings(home=home, index_on_start=False)
    study = _study_file(settings)
    env = {"RADCLIP_HOME": str(home), "RADCLIP_INDEX_ON_START": "false"}
    with ServeProcess(env) as server:
        result = measure(server.url, study, args.uploads)
    result |= {
        "study": study.name,
        "models": {"triage": settings.triage_model, "clip": settings.clip_model},
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
