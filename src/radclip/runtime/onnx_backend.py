"""ONNX Runtime serving backend: the same runners' interface, no torch forward at request time.

Artifacts come from :mod:`radclip.export.onnx_export`; :func:`find_exports` accepts them only
when ``manifest.json`` names them for the exact weights (card sha256) and their own sha256
still matches, so a stale or corrupt export is never served.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from radclip.models.weights import sha256_file
from radclip.runtime.triage_runner import TriageResult, TriageRunner

log = logging.getLogger(__name__)


def session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def find_exports(export_dir: Path, card: Any) -> dict[str, Path]:
    """Role -> verified ONNX file for this card's weights; empty when none match."""
    manifest = export_dir / "manifest.json"
    if not manifest.is_file():
        return {}
    found: dict[str, Path] = {}
    for entry in json.loads(manifest.read_text()).get("models", []):
        path = export_dir / entry["file"]
        if entry.get("source_name") != card.name or entry.get("source_sha256") != card.weights_sha256 or not path.is_file():
            continue
        if sha256_file(path) != entry["sha256"]:
            log.warning("ONNX export %s fails its checksum; ignoring it (re-export with `radclip export onnx`)", path.name)
            continue
        found[entry["role"]] = path
    return found


class OnnxTriageRunner(TriageRunner):
    backend = "onnxruntime"

    def __init__(self, card: Any, path: Path, threads: int = 0) -> None:
        super().__init__(model=None, card=card)
        self.session = session(path, threads)
        self.onnx_file = path

    def version_info(self) -> dict[str, Any]:
        return {**super().version_info(), "onnx_sha256": sha256_file(self.onnx_file)[:16]}

    def run(self, contract: np.ndarray) -> TriageResult:
        start = time.perf_counter()
        x = np.ascontiguousarray(contract, dtype=np.float32)[None] if contract.ndim == 3 else contract
        logits, features, cams = self.session.run(None, {"image": x})
        return self._result(logits[0].astype(np.float64), cams, (time.perf_counter() - start) * 1000)

    def cam(self, result: TriageResult, label: str) -> np.ndarray:
        idx = self.label_index(label)
        return _upsample_normalise(np.asarray(result.features)[0, idx], self.input_size)


def _upsample_normalise(cam: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (half-pixel centres, like torch's align_corners=False) resize, then min-max to [0, 1]."""
    from skimage.transform import resize

    up = resize(cam.astype(np.float64), (size, size), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    lo, hi = float(up.min()), float(up.max())
    return ((up - lo) / (hi - lo + 1e-7)).astype(np.float32)


def text_tokenizer(text_cfg: dict[str, Any]) -> Any:
    """The text tower's tokenizer alone (no weights), from the card's text config."""
    from radclip.models.tokenizer import HashTokenizer, hf_tokenizer

    kind = text_cfg.get("kind", "minilm")
    length = int(text_cfg.get("context_length", 77))
    if kind == "tiny":
        return HashTokenizer(int(text_cfg.get("vocab_size", 4096)), length)
    if kind == "minilm":
        from radclip.models.text_encoder import minilm_path

        return hf_tokenizer(str(minilm_path()), length)
    return hf_tokenizer(str(text_cfg["name_or_path"]), length)


class OnnxClipRunner:
    backend = "onnxruntime"

    def __init__(self, card: Any, image_path: Path, text_path: Path, threads: int = 0) -> None:
        self.card = card
        self.version = f"{card.name}@{card.version}"
        self.dim = int(card.config.get("embed_dim", 512))
        self._size = int(card.preprocessing.input_size)
        self.image_session = session(image_path, threads)
        self.text_session = session(text_path, threads)
        self.tokenize = text_tokenizer(card.config.get("text", {}))
        self._lock = threading.Lock()

    @property
    def input_size(self) -> int:
        return self._size

    def version_info(self) -> dict[str, Any]:
        return {"name": self.card.name, "version": self.card.version, "sha256": self.card.weights_sha256, "backend": self.backend}

    def encode_text(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            tokens = self.tokenize([t if t else " " for t in texts])
        feeds = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.int64) for k, v in tokens.items()}
        return self.text_session.run(None, feeds)[0].astype(np.float32)  # type: ignore[no-any-return]

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.image_session.run(None, {"image": x})[0].astype(np.float32)  # type: ignore[no-any-return]
