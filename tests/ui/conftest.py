"""Headless Chromium (Debian's, through Playwright) against a real uvicorn server on loopback.

Models: the tiny random-weight ones from ``tests/service/conftest.py``; with
``RADCLIP_UPDATE_SCREENSHOTS=1`` and shipped weights in ``src/radclip/weights`` the default
(real) models are used instead, so the screenshots in ``docs/`` show real output.
Corpus: 16 real NIH images from the shared data (a manifest with their findings), or
synthetic PNGs when the data is absent.
"""

from __future__ import annotations

import csv
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.service.conftest import LiveServer, tiny_clip_weights, write_png  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
DOCS_SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
CORPUS_SIZE = 16
# Browser messages that are not page errors: the favicon is inlined, so nothing else is expected.
IGNORED_CONSOLE = ()


def update_docs() -> bool:
    return os.environ.get("RADCLIP_UPDATE_SCREENSHOTS") == "1"


def shipped(name: str) -> bool:
    """True when ``src/radclip/weights`` holds the card of the named default model."""
    return (REPO / "src" / "radclip" / "weights" / f"{name}.card.json").is_file()


@pytest.fixture(scope="session")
def ui_triage_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random triage model whose classifier is scaled up: the random backbone's features are ~1e-9,
    so without it every probability is 0.5 and every CAM flat. With it, probabilities spread over
    [0, 1] and CAMs have structure — what the UI must display (bands from a per-class logit band)."""
    import torch

    from radclip.io.labels import NIH_LABELS
    from radclip.models.card import ModelCard, Preprocessing
    from radclip.models.registry import create_model
    from radclip.models.weights import save_state_dict

    torch.manual_seed(0)
    model = create_model("mobilenetv2_triage")
    with torch.no_grad():
        model.classifier.weight.normal_(0, 4e7)
        model.classifier.bias.copy_(torch.linspace(-2.0, 0.5, len(NIH_LABELS)))
    out = tmp_path_factory.mktemp("ui_weights") / "ui-triage.safetensors"
    sha = save_state_dict(model.state_dict(), out)
    ModelCard(
        name="tiny-triage-ui", architecture="mobilenetv2_triage", version="test-ui-0", task="triage", labels=list(NIH_LABELS),
        preprocessing=Preprocessing(input_size=224, scale="imagenet", in_chans=1), weights_file=out.name, weights_sha256=sha,
        calibration={"temperature": {n: 1.5 for n in NIH_LABELS}, "val_bin_counts": [400, 120, 60, 30, 15, 8, 5, 3, 2, 1]},
    ).save(out.with_name("ui-triage.card.json"))
    return out


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        r = subprocess.run([str(REPO / "scripts" / "ensure_apt.sh"), "chromium"], capture_output=True, text=True, timeout=900)
        if r.returncode != 0 or not Path(CHROMIUM).is_file():
            pytest.skip(f"Debian chromium could not be installed: {(r.stderr or r.stdout).strip()[-300:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield b
    b.close()
    pw.stop()


def _data_root() -> Path:
    from radclip.settings import load_settings

    return load_settings().data_root


@pytest.fixture(scope="session")
def ui_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest CSV of 16 real NIH studies (varied findings), or a folder of synthetic PNGs."""
    root = _data_root()
    manifest = root / "cxr" / "manifest.csv"
    out = tmp_path_factory.mktemp("ui_corpus")
    if not manifest.is_file():
        for i in range(CORPUS_SIZE):
            write_png(out / f"case{i:02d}.png", seed=200 + i, size=128)
        return out
    with manifest.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == "nih" and r["view"]]
    picked, seen = [], set()
    for r in rows:  # one study per finding string first, so the grid shows varied findings
        if r["finding"] not in seen:
            seen.add(r["finding"])
            picked.append(r)
        if len(picked) == CORPUS_SIZE:
            break
    picked += [r for r in rows if r not in picked][: CORPUS_SIZE - len(picked)]
    csv_path = out / "corpus.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["image_id", "path", "patient_id", "view", "finding", "source"])
        w.writeheader()
        for r in picked:
            w.writerow({"image_id": r["image_id"], "path": str(root / "cxr" / r["path"]), "patient_id": r["patient_id"],
                        "view": r["view"], "finding": r["finding"].replace("|", ", "), "source": r["source"]})  # fmt: skip
    return csv_path


@pytest.fixture(scope="session")
def sample_images(ui_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files to upload: a PNG from the corpus, the real DICOM when present, and a corrupt file."""
    if ui_corpus.suffix == ".csv":
        with ui_corpus.open(newline="") as fh:
            png = Path(next(csv.DictReader(fh))["path"])
    else:
        png = sorted(ui_corpus.glob("*.png"))[0]
    bad = tmp_path_factory.mktemp("bad") / "not-an-image.png"
    bad.write_bytes(b"this is not a PNG")
    out = {"png": png, "bad": bad}
    dicom = _data_root() / "dicom" / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
    out["dicom"] = dicom if dicom.is_file() else png
    return out


def ui_settings(home: Path, corpus: Path, triage: Path, clip: Path) -> Any:
    """Tiny models; for the documentation screenshots, each default (real) model that is shipped."""
    from radclip.settings import load_settings

    defaults = load_settings()
    if update_docs():
        triage = defaults.triage_model if shipped(defaults.triage_model) else triage
        clip = defaults.clip_model if shipped(defaults.clip_model) else clip
    return load_settings(home=home, triage_model=str(triage), clip_model=str(clip), corpus=corpus)


@pytest.fixture(scope="module")
def ui_server(ui_triage_weights: Path, tiny_clip_weights: Path, ui_corpus: Path,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:  # fmt: skip
    import time

    from radclip.service.app import create_app

    settings = ui_settings(tmp_path_factory.mktemp("ui_home"), ui_corpus, ui_triage_weights, tiny_clip_weights)
    app = create_app(settings)
    with LiveServer(app) as server:
        deadline = time.monotonic() + 120
        while app.state.radclip.warmup.state == "warming" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.radclip.warmup.state == "ready", app.state.radclip.warmup.to_dict()
        server.state = app.state.radclip  # type: ignore[attr-defined]
        yield server


class GatedEmbedder:
    """Wraps the CLIP runner; each index batch waits for a permit from the test (warming is observable)."""

    def __init__(self, inner: Any, permits: threading.Semaphore) -> None:
        self.inner, self.permits = inner, permits
        self.version, self.dim = inner.version, inner.dim
        self.input_size = inner.input_size

    def encode_images(self, batch: Any) -> Any:
        self.permits.acquire(timeout=60)
        return self.inner.encode_images(batch)


@pytest.fixture()
def gated_server(ui_triage_weights: Path, tiny_clip_weights: Path, ui_corpus: Path,  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, threading.Semaphore]]:  # fmt: skip
    """A server whose index builds in batches of 4, one batch per ``permits.release()``."""
    from radclip.engine.retrieval import Retriever
    from radclip.engine.study_index import StudyIndex, default_load_fn
    from radclip.service.app import create_app
    from radclip.service.state import build_state
    from radclip.settings import load_settings

    permits = threading.Semaphore(0)
    settings = load_settings(home=tmp_path_factory.mktemp("gated_home"), triage_model=str(ui_triage_weights),
                             clip_model=str(tiny_clip_weights), corpus=ui_corpus)  # fmt: skip
    state = build_state(settings)
    state.index = StudyIndex(GatedEmbedder(state.clip, permits), database=state.registry.engine, root=settings.home / "index",
                             batch_size=4, load_fn=default_load_fn(state.clip.input_size))  # fmt: skip
    state.retriever = Retriever(state.index, text_embedder=state.text, image_embedder=state.clip)
    with LiveServer(create_app(settings, state=state)) as server:
        yield server, permits
        permits.release(100)


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; console errors and page errors are collected in ``page.errors`` and must stay empty."""
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP blocks (no
    # unsafe-eval); tests/ui/test_ui_security.py runs the UI with the policy enforced.
    context = browser.new_context(viewport={"width": 1480, "height": 900}, device_scale_factor=1, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.errors = errors  # type: ignore[attr-defined]
    pg.allowed_errors = []  # type: ignore[attr-defined]  # substrings a test expects (e.g. a deliberate 4xx)
    yield pg
    context.close()
    unexpected = [e for e in errors if not any(a in e for a in pg.allowed_errors)]  # type: ignore[attr-defined]
    assert not unexpected, f"browser console errors: {unexpected}"


def screenshot(page: Any, name: str) -> Path:
    """Save to test-artifacts/ui/ (and to docs/screenshots/ with RADCLIP_UPDATE_SCREENSHOTS=1)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    if update_docs():
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SHOTS / f"{name}.png"))
    return path
