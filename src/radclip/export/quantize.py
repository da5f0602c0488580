"""int8 quantisation of exported ONNX models (ONNX Runtime's quantisation tool).

Two paths, both producing a new ``.onnx`` file beside (or instead of) the fp32 export:

* **static** (default): weights *and* activations in int8, QDQ format (``QuantizeLinear`` /
  ``DequantizeLinear`` pairs that ONNX Runtime fuses into ``QLinearConv`` / ``QLinearMatMul``),
  per-channel weight scales. Activation ranges come from a calibration set: contract tensors of
  manifest images (the **train** split by default, never the split the AUC is measured on), fed
  through :class:`ContractCalibrationReader`.
* **dynamic**: int8 weights, activation scales computed per batch at run time. On the shipped
  MobileNetV2 CNNs this becomes ``ConvInteger`` and is ~10x *slower* than fp32 on CPU; it is kept
  for transformer towers, where it helps.

Nodes can be kept in fp32 (``QuantConfig.exclude_nodes``; :func:`nodes_through` gives a graph's
stem, :func:`nodes_from` its tail, :func:`last_nodes` e.g. the classifier). For the shipped
MobileNetV2 towers, quantising everything costs 0.03-0.05 mean AUC; a sensitivity scan found the
stem (the normalised input and the first convolutions at 80x80) and the late residual blocks to be
the layers whose int8 noise the outputs feel most, and keeping those in fp32 with percentile
calibration is what brings int8 within the AUC budget. The model's ONNX metadata (card,
preprocessing) is carried over and a ``radclip.quantization`` entry records how the file was made.

Speed and AUC change of each path for the shipped models: ``benchmarks/quant_eval.py`` and
docs/performance.md.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

QUANT_META_KEY = "radclip.quantization"
QuantMode = Literal["static", "dynamic"]
QuantTypeName = Literal["QUInt8", "QInt8"]
CalibrationMethodName = Literal["MinMax", "Entropy", "Percentile", "Distribution"]


class QuantizationError(RuntimeError):
    """A model could not be quantised as asked; the message says what to change."""


@dataclass(frozen=True)
class QuantConfig:
    """How to quantise one model.

    ``activation_type`` / ``weight_type``: ONNX Runtime ``QuantType`` names. ``QUInt8`` activations
    with ``QInt8`` weights (u8s8) is what ORT's x86 int8 kernels are fastest on (VNNI);
    ``reduce_range`` (7-bit weights) avoids u8s8 saturation on CPUs *without* VNNI.
    ``exclude_nodes``: node names kept in fp32. ``op_types``: op types to quantise (``None`` =
    ORT's default set). ``preprocess``: run ``quant_pre_process`` (shape inference + graph
    optimisation: folds and fuses before the ranges are collected) first.
    """

    mode: QuantMode = "static"
    activation_type: QuantTypeName = "QUInt8"
    weight_type: QuantTypeName = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    calibrate_method: CalibrationMethodName = "MinMax"
    exclude_nodes: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    preprocess: bool = True
    extra_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["exclude_nodes"] = list(self.exclude_nodes)
        out["op_types"] = list(self.op_types) if self.op_types is not None else None
        return out


# ---------------------------------------------------------------------------------------------
# Calibration data
# ---------------------------------------------------------------------------------------------


def calibration_images(
    manifest: str | Path,
    images_root: str | Path,
    size: int,
    n: int = 128,
    split: str | Sequence[str] = "train",
    sources: Sequence[str] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(n, 1, size, size) float32 contract tensors of a seeded sample of ``split`` rows.

    Images are decoded through :mod:`radclip.io` exactly as the evaluation and the service decode
    them, so the collected activation ranges are those the model sees in production. Fewer rows
    than ``n`` in the split: all of them are used.
    """
    from radclip.io.datasets import ManifestDataset

    if n < 1:
        raise QuantizationError(f"calibration needs at least one image; got n={n}")
    ds = ManifestDataset(manifest, images_root, split=split, sources=sources, size=size)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False))
    return np.stack([ds.image(int(i)) for i in rows]).astype(np.float32, copy=False)


class ContractCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over an array of contract tensors.

    Yields ``{input_name: images[i : i + batch_size]}`` until the array is exhausted, then ``None``
    (ORT's end-of-data signal); :meth:`rewind` starts over (ORT's calibrators may read the data
    more than once, e.g. the entropy and percentile methods). Duck-typed: ORT's
    ``CalibrationDataReader`` accepts any object with ``get_next``, so this module imports
    ONNX Runtime only when it quantises.
    """

    def __init__(self, images: np.ndarray, input_name: str = "image", batch_size: int = 8) -> None:
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[1] != 1:
            raise QuantizationError(
                f"calibration images must be contract tensors (N, 1, S, S); got shape {arr.shape} "
                "(build them with calibration_images() or radclip.io.contract.to_contract_tensor)"
            )
        if len(arr) == 0:
            raise QuantizationError("calibration set is empty; pass at least one image")
        if batch_size < 1:
            raise QuantizationError(f"batch_size must be >= 1; got {batch_size}")
        self.images = np.ascontiguousarray(arr, dtype=np.float32)
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        start, self._next = self._next, self._next + self.batch_size
        return {self.input_name: self.images[start : self._next]}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)


# ---------------------------------------------------------------------------------------------
# Graph inspection
# ---------------------------------------------------------------------------------------------


def input_spec(path: Path) -> tuple[str, int]:
    """(input name, spatial size) of a single-image-input ONNX model, from its graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise QuantizationError(
            f"{path.name} has {len(inputs)} inputs ({[i.name for i in inputs]}); static calibration here feeds one "
            "image input — quantise text towers with QuantConfig(mode='dynamic')"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    size = dims[-1].dim_value if len(dims) == 4 else 0
    if size <= 0:
        raise QuantizationError(
            f"{path.name}: input {inputs[0].name!r} has no static spatial size; re-export with a fixed image size"
        )
    return inputs[0].name, int(size)


def last_nodes(path: Path, op_types: Sequence[str] = ("Conv", "Gemm", "MatMul"), n: int = 1) -> list[str]:
    """Names of the last ``n`` nodes of ``op_types`` in graph order (candidates to keep in fp32)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = [node.name for node in model.graph.node if node.op_type in op_types]
    return names[-n:] if n > 0 else []


def _graph_node_names(path: Path) -> list[str]:
    """Non-constant node names in graph (topological) order."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [node.name for node in model.graph.node if node.op_type != "Constant"]


def _position(names: list[str], name: str, path: Path) -> int:
    if name not in names:
        close = [n for n in names if name.split("/")[-1] in n][:5]
        raise QuantizationError(f"no node named {name!r} in {path.name}; similar names: {close or names[:5]}")
    return names.index(name)


def nodes_through(path: Path, last: str) -> list[str]:
    """Names of every non-constant node from the graph's start through the node named ``last``.

    Keeping such a prefix (the stem: input normalisation and the first convolutions) in fp32 is
    the usual remedy when a CNN's first layers are the ones most sensitive to int8 noise.
    """
    names = _graph_node_names(path)
    return names[: _position(names, last, path) + 1]


def nodes_from(path: Path, first: str) -> list[str]:
    """Names of every non-constant node from the node named ``first`` to the graph's end (the tail)."""
    names = _graph_node_names(path)
    return names[_position(names, first, path) :]


def quantized_op_counts(path: Path) -> dict[str, int]:
    """Op-type histogram of a (quantised) graph: how many QuantizeLinear/DequantizeLinear it holds."""
    import collections

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node))


# ---------------------------------------------------------------------------------------------
# Quantisation
# ---------------------------------------------------------------------------------------------


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    try:
        return getattr(QuantType, name)
    except AttributeError:
        raise QuantizationError(f"unknown quantisation type {name!r}; use 'QUInt8' or 'QInt8'") from None


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    try:
        return getattr(CalibrationMethod, name)
    except AttributeError:
        raise QuantizationError(
            f"unknown calibration method {name!r}; use MinMax, Entropy, Percentile or Distribution"
        ) from None


def _copy_metadata(src: Path, dst: Path, config: QuantConfig, n_calibration: int | None) -> None:
    import onnx

    source = onnx.load(str(src), load_external_data=False)
    out = onnx.load(str(dst))
    have = {p.key for p in out.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in have:
            entry = out.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value
    info = {**config.to_dict(), "source_file": src.name, "n_calibration_images": n_calibration}
    entry = out.metadata_props.add()
    entry.key, entry.value = QUANT_META_KEY, json.dumps(info)
    onnx.save(out, str(dst))


def _check_node_names(src: Path, quantised: Path, names: Sequence[str]) -> None:
    """Excluded nodes must name nodes of the model, or the exclusion silently does nothing.

    A name only in ``src`` (a no-op such as a float->float ``Cast`` that pre-processing folded
    away) is logged, not refused: there is nothing left to keep in fp32.
    """
    if not names:
        return
    import onnx

    def node_names(path: Path) -> set[str]:
        return {node.name for node in onnx.load(str(path), load_external_data=False).graph.node}

    have, original = node_names(quantised), node_names(src)
    unknown = [n for n in names if n not in have and n not in original]
    if unknown:
        raise QuantizationError(
            f"exclude_nodes names not in {src.name}: {unknown[:5]}; take names from the exported model "
            "(last_nodes / nodes_through)"
        )
    folded = [n for n in names if n not in have]
    if folded:
        log.info(
            "pre-processing removed %d excluded node(s) (e.g. %s); nothing to keep in fp32 there",
            len(folded),
            folded[:3],
        )


def preprocess_for_quantization(src: Path, dst: Path) -> Path:
    """ORT's ``quant_pre_process``: symbolic shape inference and graph optimisation, written to ``dst``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as exc:  # symbolic inference fails on some graphs; plain ONNX inference is enough
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        except Exception:
            raise QuantizationError(
                f"quant_pre_process failed on {src.name}: {exc}; retry with QuantConfig(preprocess=False)"
            ) from exc
    return dst


def quantize_onnx(
    src: str | Path,
    dst: str | Path,
    config: QuantConfig | None = None,
    calibration: ContractCalibrationReader | np.ndarray | None = None,
) -> Path:
    """Quantise the fp32 ONNX model ``src`` into ``dst`` (int8) and return ``dst``.

    ``config.mode == "static"`` needs ``calibration``: a :class:`ContractCalibrationReader`, or an
    array of contract tensors (wrapped in one, batch 8, for the graph's input name). The file is
    written atomically: a failed quantisation never leaves a half-written ``dst``.
    """
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    src, dst = Path(src), Path(dst)
    cfg = config or QuantConfig()
    if not src.is_file():
        raise QuantizationError(f"no ONNX model at {src}; export it first (`radclip export onnx`)")
    if src.resolve() == dst.resolve():
        raise QuantizationError(
            f"refusing to overwrite the fp32 model {src}; pass another output path (e.g. *.int8.onnx)"
        )
    if cfg.mode == "static" and calibration is None:
        raise QuantizationError(
            "static quantisation needs calibration data: pass calibration=calibration_images(manifest, images_root, size) "
            "or use QuantConfig(mode='dynamic')"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.onnx")
    n_cal: int | None = None
    with tempfile.TemporaryDirectory(prefix="radclip-quant-") as work:
        model_in = preprocess_for_quantization(src, Path(work) / "pre.onnx") if cfg.preprocess else src
        _check_node_names(src, model_in, cfg.exclude_nodes)
        common: dict[str, Any] = {
            "per_channel": cfg.per_channel,
            "reduce_range": cfg.reduce_range,
            "weight_type": _quant_type(cfg.weight_type),
            "nodes_to_exclude": list(cfg.exclude_nodes) or None,
            "op_types_to_quantize": list(cfg.op_types) if cfg.op_types is not None else None,
            "extra_options": dict(cfg.extra_options) or None,
        }
        if cfg.mode == "static":
            if isinstance(calibration, np.ndarray):
                name, _ = input_spec(src)
                calibration = ContractCalibrationReader(calibration, input_name=name)
            assert calibration is not None
            calibration.rewind()
            n_cal = len(calibration.images) if hasattr(calibration, "images") else None
            quantize_static(str(model_in), str(tmp), calibration, quant_format=QuantFormat.QDQ,
                            activation_type=_quant_type(cfg.activation_type),
                            calibrate_method=_calibration_method(cfg.calibrate_method), **common)  # fmt: skip
        elif cfg.mode == "dynamic":
            quantize_dynamic(str(model_in), str(tmp), **common)
        else:
            raise QuantizationError(f"unknown mode {cfg.mode!r}; use 'static' or 'dynamic'")
    _copy_metadata(src, tmp, cfg, n_cal)
    tmp.replace(dst)
    return dst


# ---------------------------------------------------------------------------------------------
# The measured recipe for the embedded MobileNetV2 towers
# ---------------------------------------------------------------------------------------------

MOBILENETV2_STEM_LAST = "features.2/conv/conv.2/Conv"  # input normalisation through the second inverted-residual block
MOBILENETV2_LATE = ("features.15/", "features.16/", "features.17/conv/conv.0/")  # next most sensitive after the stem
PERCENTILE = {"CalibPercentile": 99.999}  # ranges ignore the top 0.001% of calibration values


def find_node(path: Path, suffix: str) -> str:
    """The one node whose name ends in ``suffix``; raises naming what was found otherwise."""
    names = [n for n in _graph_node_names(path) if n.endswith(suffix)]
    if len(names) != 1:
        raise QuantizationError(
            f"{Path(path).name}: expected one node ending in {suffix!r}, found {names[:5]}; "
            "this recipe is for torchvision-layout MobileNetV2 graphs: pass your own QuantConfig"
        )
    return names[0]


def mobilenetv2_recipe(path: Path) -> QuantConfig:
    """Static int8 with the stem and the late blocks in fp32, percentile calibration.

    Chosen by ``benchmarks/quant_eval.py`` on the shipped models: the only variant measured within
    the 0.005 AUC budget for both (ΔAUC +0.003 each on the NIH test split, 1.5-1.6x faster).
    """
    stem = tuple(nodes_through(path, find_node(path, MOBILENETV2_STEM_LAST)))
    late = tuple(n for n in _graph_node_names(path) if any(key in n for key in MOBILENETV2_LATE))
    return QuantConfig(exclude_nodes=stem + late, calibrate_method="Percentile", extra_options=dict(PERCENTILE))
