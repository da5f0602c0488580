"""Render what radclip sends back to PACS for docs/integration.md: the SR (dsr2html + headless Chromium) and the heat map.

    PYTHONPATH=src python scripts/render_pacs_results.py [DICOM] [OUT_DIR]

Runs the shipped triage model on the shared real DICOM (default), builds the TID 1500 SR and the
heat-map Secondary Capture exactly as `radclip pacs listen` does, and writes OUT_DIR (default
docs/screenshots) / pacs-sr.png, pacs-heatmap.png and pacs-report.json (the FHIR conclusion).
Needs dcmtk (dsr2html) and Debian chromium.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main(dicom: Path, out: Path) -> None:
    import pydicom
    from PIL import Image

    from radclip.integrations.dicom_results import build_results
    from radclip.integrations.fhir_provenance import model_identity
    from radclip.integrations.fhir_report import conclusion_text, report_findings
    from radclip.integrations.operating_points import triage_operating_points
    from radclip.integrations.pipeline import heatmap_overlay
    from radclip.io.contract import to_contract_tensor
    from radclip.io.loader import load_image
    from radclip.runtime.triage_runner import TriageRunner

    triage = TriageRunner.load("radclip-mobilenetv2-nih")
    contract = to_contract_tensor(load_image(dicom).pixels, triage.input_size)
    result = triage.run(contract)
    items = report_findings(
        result.labels, result.probs, [], triage_operating_points(result.labels, triage.card.calibration)
    )
    models = [model_identity("triage", triage.card)]

    rgb, caption = heatmap_overlay(triage, contract, result, items)
    res = build_results(pydicom.dcmread(dicom, stop_before_pixels=True), items, models, rgb, caption)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sr = Path(tmp) / "sr.dcm"
        res.sr.save_as(sr, enforce_file_format=True)
        html = Path(tmp) / "sr.html"
        subprocess.run(["dsr2html", "+U8", str(sr), str(html)], check=True)
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={out / 'pacs-sr.png'}", "--window-size=900,1100", html.as_uri()],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
    Image.fromarray(res.heatmap.pixel_array).save(out / "pacs-heatmap.png")
    summary = {
        "conclusion": conclusion_text(items, models),
        "probabilities": {f.name: round(f.confidence, 4) for f in items},
        "operating_points": {f.name: f.threshold for f in items},
        "heatmap_caption": caption,
    }
    (out / "pacs-report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    default = next((root / ".." / "shared" / "data" / "dicom").glob("*.dcm"))
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else default,
        Path(sys.argv[2]) if len(sys.argv) > 2 else root / "docs" / "screenshots",
    )
