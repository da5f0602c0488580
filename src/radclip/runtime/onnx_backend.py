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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radclip.models.weights import sha256_file
from radclip.runtime.accelerator import CPU_EP
from radclip.runtime.triage_runner import TriageResult, TriageRunner

log = logging.getLogger(__name__)
CPU_PROVIDERS = (CPU_EP,)  # the sessions' providers unless runtime/accelerator.py selected others


def session(
    path: Path, threads: int = 0, spinning: bool = False, providers: Sequence[str] = CPU_PROVIDERS
) -> Any:
    """An inference session on ``providers`` (from :mod:`radclip.runtime.accelerator`; CPU alone by default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    # By default no busy-waiting between ops: the triage and image sessions run side by side on
    # request threads, and spinning pool threads starve each other (2 cores, both sessions at
    # once under load: 19.8 ms spinning vs 4.6 ms not; docs/performance.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
    # onnxruntime falls back (to CPU) when a GPU provider fails to load: say so once, at start
    if sess.get_providers()[0] != providers[0]:
        log.warning("%s runs on %s, not %s as selected; see the onnxruntime error above (CUDA/cuDNN/TensorRT libraries)",
                    path.name, sess.get_providers(), list(providers))  # fmt: skip
    return sess


def find_exports(export_dir: Path, card: Any, partner: Any | None = None) -> dict[str, Path]:
    """Role -> verified ONNX file for this card's weights; empty when none match.

    Graphs built from two models (the fused ``screen`` graph) are returned only when ``partner``
    is the card of the second model, with the same weights.
    """
    manifest = export_dir / "manifest.json"
    if not manifest.is_file():
        return {}
    found: dict[str, Path] = {}
    for entry in json.loads(manifest.read_text()).get("models", []):
        path = export_dir / entry["file"]
        if entry.get("source_name") != card.name or entry.get("source_sha256") != card.weights_sha256 or not path.is_file():
            continue
        if "partner_name" in entry and (
            partner is None or entry["partner_name"] != partner.name or entry.get("partner_sha256") != partner.weights_sha256
        ):
            continue
        if sha256_file(path) != entry["sha256"]:
            log.warning("ONNX export %s fails its checksum; ignoring it (re-export with `radclip export onnx`)", path.name)
            continue
        found[entry["role"]] = path
    return found


class OnnxTriageRunner(TriageRunner):
    backend = "onnxruntime"

    def __init__(
        self, card: Any, path: Path, threads: int = 0, providers: Sequence[str] = CPU_PROVIDERS
    ) -> None:
        super().__init__(model=None, card=card)
        self.session = session(path, threads, providers=providers)
        self.onnx_file = path
        self._onnx_sha = sha256_file(path)[:16]  # once: hashing the file per request cost ~5 ms

    def version_info(self) -> dict[str, Any]:
        return {**super().version_info(), "onnx_sha256": self._onnx_sha}

    def run(self, contract: np.ndarray) -> TriageResult:
        start = time.perf_counter()
        x = np.ascontiguousarray(contract, dtype=np.float32)[None] if contract.ndim == 3 else contract
        logits, features, cams = self.session.run(None, {"image": x})
        return self._result(logits[0].astype(np.float64), cams, (time.perf_counter() - start) * 1000)

    def cam(self, result: TriageResult, label: str) -> np.ndarray:
        idx = self.label_index(label)
        return _upsample_normalise(np.asarray(result.features)[0, idx], self.input_size)


class OnnxScreenRunner:
    """The fused /screen graph: triage logits + CAMs and the image embedding from one pass over shared trunk blocks.

    Wraps the loaded :class:`OnnxTriageRunner` for calibration, labels and CAMs, so its results are
    the same :class:`TriageResult` objects the two-graph path produces.
    """

    backend = "onnxruntime"

    def __init__(self, triage: OnnxTriageRunner, path: Path, threads: int = 0,
                 providers: Sequence[str] = CPU_PROVIDERS) -> None:  # fmt: skip
        self.triage = triage
        # The one session on /screen's path: its pool may busy-wait between ops (3.1 ms vs 4.1-4.6 ms a
        # request without; docs/performance.md). The side-by-side sessions must not (they starve each other).
        self.session = session(path, threads, spinning=True, providers=providers)
        self.onnx_file = path

    def run(self, contract: np.ndarray) -> tuple[TriageResult, np.ndarray]:
        """One contract tensor ``(1, S, S)`` -> (triage result, L2-normalised embedding ``(D,)``)."""
        return self.run_batch(np.asarray(contract)[None])[0]

    def run_batch(self, contracts: np.ndarray) -> list[tuple[TriageResult, np.ndarray]]:
        """``(N, 1, S, S)`` -> one (triage result, embedding) per image, from one session call."""
        start = time.perf_counter()
        logits, cams, embedding = self.session.run(None, {"image": np.ascontiguousarray(contracts, dtype=np.float32)})
        ms = (time.perf_counter() - start) * 1000 / len(contracts)
        return [(self.triage._result(logits[i].astype(np.float64), cams[i : i + 1], ms), embedding[i].astype(np.float32))
                for i in range(len(contracts))]  # fmt: skip


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

    def __init__(self, card: Any, image_path: Path, text_path: Path, threads: int = 0, image_threads: int | None = None,
                 precision: str = "fp32", providers: Sequence[str] = CPU_PROVIDERS) -> None:  # fmt: skip
        self.card = card
        self.precision = precision  # of the image tower; "int8" changes the version, so indexes and calibrations are not mixed
        self.version = f"{card.name}@{card.version}" + ("" if precision == "fp32" else f"+{precision}")
        self.dim = int(card.config.get("embed_dim", 512))
        self._size = int(card.preprocessing.input_size)
        image_threads = threads if image_threads is None else image_threads
        self.image_session = session(image_path, image_threads, providers=providers)
        self.text_session = session(text_path, threads, providers=providers)
        self.tokenize = text_tokenizer(card.config.get("text", {}))
        self._lock = threading.Lock()

    @property
    def input_size(self) -> int:
        return self._size

    def version_info(self) -> dict[str, Any]:
        return {"name": self.card.name, "version": self.card.version, "sha256": self.card.weights_sha256, "backend": self.backend,
                "image_precision": self.precision}  # fmt: skip

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
