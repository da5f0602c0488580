"""Export one model and prove the export computes what PyTorch computes.

Parity inputs are real shared images when ``RADCLIP_DATA_ROOT`` holds them (NIH test split),
otherwise seeded random contract tensors. Tolerances: max |Δ| ≤ 1e-4 on logits and embeddings,
Pearson r ≥ 0.999 on CAM maps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_ABS_DIFF = 1e-4
MIN_CAM_CORR = 0.999
PARITY_TEXTS = ["small left pleural effusion", "no acute cardiopulmonary abnormality", "right upper lobe pneumonia",
                "enlarged cardiac silhouette with pulmonary edema"]  # fmt: skip


class ParityError(AssertionError):
    """An export disagrees with PyTorch beyond tolerance; it is not used."""


@dataclass(frozen=True)
class ParityReport:
    role: str
    max_abs_diff: float
    cam_corr: float | None = None

    def line(self) -> str:
        cam = f", CAM r={self.cam_corr:.6f}" if self.cam_corr is not None else ""
        return f"parity {self.role}: max |Δ| = {self.max_abs_diff:.2e}{cam}"


def parity_images(size: int, n: int = 8) -> np.ndarray:
    """(n, 1, S, S) contract tensors: real NIH test images when available, else seeded noise."""
    from radclip.settings import get_settings

    manifest = get_settings().cxr_root / "manifest.csv"
    if manifest.is_file():
        import pandas as pd

        from radclip.io.contract import to_contract_tensor
        from radclip.io.loader import load_image

        frame = pd.read_csv(manifest, usecols=["source", "split", "path"])
        rows = frame[(frame.source == "nih") & (frame.split == "test")].head(n)
        return np.stack([to_contract_tensor(load_image(get_settings().cxr_root / p).pixels, size) for p in rows.path])
    return np.random.default_rng(0).random((n, 1, size, size), dtype=np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a @ b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def compare_triage(role: str, model: Any, card: Any, images: np.ndarray, logits: np.ndarray, cams: np.ndarray,
                   extra_diff: float = 0.0) -> ParityReport:  # fmt: skip
    """Exported triage outputs against the PyTorch model's; ``extra_diff`` joins the |Δ| (e.g. embeddings)."""
    import torch

    from radclip.export.onnx_export import triage_head
    from radclip.models.preprocess import to_model_input

    with torch.inference_mode():
        ref_logits, ref_cams = (t.numpy() for t in triage_head(model, model.forward_features(to_model_input(torch.from_numpy(images), card.preprocessing))))
    diff = max(float(np.abs(logits - ref_logits).max()), extra_diff)
    corr = min(_corr(cams[i, k], ref_cams[i, k]) for i in range(len(images)) for k in range(cams.shape[1]))
    report = ParityReport(role, diff, corr)
    if diff > MAX_ABS_DIFF or corr < MIN_CAM_CORR:
        raise ParityError(f"{report.line()} exceeds tolerance (|Δ| ≤ {MAX_ABS_DIFF}, r ≥ {MIN_CAM_CORR})")
    return report


def check_triage(model: Any, card: Any, onnx_path: Path, images: np.ndarray) -> ParityReport:
    from radclip.runtime.onnx_backend import session

    logits, _, cams = session(onnx_path).run(None, {"image": images})
    return compare_triage("triage", model, card, images, logits, cams)


def check_clip(model: Any, image_path: Path, text_path: Path, images: np.ndarray) -> list[ParityReport]:
    import torch

    from radclip.runtime.onnx_backend import session

    with torch.inference_mode():
        ref_img = model.encode_image(torch.from_numpy(images)).numpy()
        tokens = model.tokenize(PARITY_TEXTS)
        ref_txt = model.encode_text(PARITY_TEXTS).numpy()
    img = session(image_path).run(None, {"image": images})[0]
    txt = session(text_path).run(None, {k: v.numpy() for k, v in tokens.items()})[0]
    reports = [ParityReport("clip-image", float(np.abs(img - ref_img).max())), ParityReport("clip-text", float(np.abs(txt - ref_txt).max()))]
    for r in reports:
        if r.max_abs_diff > MAX_ABS_DIFF:
            raise ParityError(f"{r.line()} exceeds tolerance {MAX_ABS_DIFF}")
    return reports


def _torchscript(graph: Any, example: Any, path: Path) -> None:
    import torch

    with torch.no_grad():
        torch.jit.trace(graph.eval(), example, check_trace=False).save(str(path))


def export_and_check(role: str, name: str, out: Path, *, if_missing: bool = False, torchscript: bool = False,
                     opset: int = 17) -> Iterator[str]:  # fmt: skip
    """Export ``role`` ("triage" or "clip") of model ``name`` into ``out``; yield progress lines."""
    import torch

    from radclip.export import onnx_export as ox
    from radclip.models.registry import find_card, load_pretrained
    from radclip.runtime.onnx_backend import find_exports

    card, _ = find_card(name)
    have = find_exports(out, card)
    needed = {"triage"} if role == "triage" else {"clip-image", "clip-text"}
    if if_missing and needed <= set(have):
        yield f"{card.name}: verified export already in {out}"
        return
    model, card = load_pretrained(name)
    images = parity_images(card.preprocessing.input_size if role == "triage" else model.preprocessing.input_size)
    if role == "triage":
        exported = [ox.export_triage(model, card, out, opset)]
        reports = [check_triage(model, card, exported[0].path, images)]
        if torchscript:
            _torchscript(ox.TriageGraph(model, card.preprocessing), torch.from_numpy(images[:1]), out / f"{card.name}.triage.pt")
    else:
        exported = ox.export_clip(model, card, out, opset)
        reports = check_clip(model, exported[0].path, exported[1].path, images)
        if torchscript:
            _torchscript(ox.ImageGraph(model), torch.from_numpy(images[:1]), out / f"{card.name}.image.pt")
    ox.write_manifest(out, exported, opset)  # only after parity passed: a failing export is never listed
    for e, r in zip(exported, reports, strict=True):
        yield f"{e.path.name}: sha256 {e.sha256[:16]}…, {r.line()}"


def export_and_check_screen(triage_name: str, clip_name: str, out: Path, *, if_missing: bool = False,
                            opset: int = 17) -> Iterator[str]:  # fmt: skip
    """Export the fused /screen graph when the two models share trunk blocks; yield progress lines."""
    from radclip.export.onnx_export import write_manifest
    from radclip.export.shared_trunk import check_screen, export_screen
    from radclip.models.registry import find_card, load_pretrained
    from radclip.runtime.onnx_backend import find_exports

    tcard, _ = find_card(triage_name)
    ccard, _ = find_card(clip_name)
    if if_missing and "screen" in find_exports(out, tcard, partner=ccard):
        yield f"{tcard.name}+{ccard.name}: verified fused /screen graph already in {out}"
        return
    triage, tcard = load_pretrained(triage_name)
    clip, ccard = load_pretrained(clip_name)
    exported, n = export_screen(triage, tcard, clip, ccard, out, opset)
    if exported is None:
        yield f"{tcard.name}+{ccard.name}: no trunk block is shared exactly; /screen runs the two graphs side by side"
        return
    try:
        report = check_screen(triage, tcard, clip, exported.path, parity_images(tcard.preprocessing.input_size))
    except ParityError:
        exported.path.unlink(missing_ok=True)
        raise
    write_manifest(out, [exported], opset)
    yield f"{exported.path.name}: {n} shared trunk blocks, sha256 {exported.sha256[:16]}…, {report.line()}"


MIN_INT8_COSINE = 0.97  # int8 image tower vs fp32 on the parity images (measured minimum 0.98)


def export_and_check_int8_image(clip_name: str, out: Path, *, if_missing: bool = False, n_calibration: int = 128,
                                opset: int = 17) -> Iterator[str]:  # fmt: skip
    """Quantise the exported fp32 image tower (static int8, the measured MobileNetV2 recipe); yield progress lines.

    Calibration uses ``n_calibration`` images of the manifest's **train** split. The file is listed
    (role ``clip-image-int8``, served only with ``RADCLIP_INT8_IMAGE=true``) when every embedding of
    the parity images keeps cosine ≥ ``MIN_INT8_COSINE`` to fp32.
    """
    from radclip.export.onnx_export import ExportedModel, write_manifest
    from radclip.export.quantize import calibration_images, mobilenetv2_recipe, quantize_onnx
    from radclip.models.registry import find_card
    from radclip.models.weights import sha256_file
    from radclip.runtime.onnx_backend import find_exports, session
    from radclip.settings import get_settings

    card, _ = find_card(clip_name)
    have = find_exports(out, card)
    if "clip-image" not in have:
        raise RuntimeError(f"no verified fp32 image tower of {card.name} in {out}; run `radclip export onnx` first")
    if if_missing and "clip-image-int8" in have:
        yield f"{card.name}: verified int8 image tower already in {out}"
        return
    root = get_settings().cxr_root
    if not (root / "manifest.csv").is_file():
        raise FileNotFoundError(f"int8 calibration reads train-split images from {root / 'manifest.csv'}, which is missing; "
                                "set RADCLIP_DATA_ROOT to the shared data folder")  # fmt: skip
    size = int(card.preprocessing.input_size)
    fp32 = have["clip-image"]
    dst = out / f"{card.name}.image.int8.onnx"
    quantize_onnx(fp32, dst, mobilenetv2_recipe(fp32), calibration=calibration_images(root / "manifest.csv", root, size, n=n_calibration))
    images = parity_images(size)
    ref, got = session(fp32).run(None, {"image": images})[0], session(dst).run(None, {"image": images})[0]
    cosine = float(np.min(np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))))
    line = f"{dst.name}: static int8 (stem + late blocks fp32), min cosine to fp32 {cosine:.4f} over {len(images)} images"
    if cosine < MIN_INT8_COSINE:
        dst.unlink(missing_ok=True)
        raise ParityError(f"{line} < {MIN_INT8_COSINE}; not listed")
    write_manifest(out, [ExportedModel("clip-image-int8", dst, sha256_file(dst), card.name, card.version, card.weights_sha256)], opset)
    yield line
