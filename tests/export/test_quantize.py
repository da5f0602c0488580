"""int8 quantisation of ONNX exports: static QDQ stays close to fp32, calibration feeds the right shapes.

A tiny CNN (conv + batch-norm + ReLU6 stem, a second conv, pooling, linear head) is exported with
the project's legacy exporter, quantised with calibration tensors, and compared to fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from radclip.export.quantize import (  # noqa: E402
    QUANT_META_KEY,
    ContractCalibrationReader,
    QuantConfig,
    QuantizationError,
    input_spec,
    last_nodes,
    nodes_through,
    quantize_onnx,
    quantized_op_counts,
)

SIZE = 32
MIN_SQNR_DB = 35.0  # static int8 of this net measures ~52 dB; calibrated on blank images instead, ~16 dB


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.ReLU6()
        )
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean(dim=(2, 3)))


def _images(n: int, seed: int) -> np.ndarray:
    """Smooth (N, 1, S, S) contract-like tensors in [0, 1] (blurred noise, like an X-ray more than white noise)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, SIZE // 4, SIZE // 4), dtype=np.float32)
    return np.clip(
        np.kron(x, np.ones((1, 1, 4, 4), np.float32)) + 0.05 * rng.standard_normal((n, 1, SIZE, SIZE)), 0, 1
    ).astype(np.float32)


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = TinyNet().eval()
    bn = net.stem[1]
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():  # non-trivial statistics, folded into the first conv's weights by the export
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("quant") / "tiny.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (torch.rand(2, 1, SIZE, SIZE),), str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)  # fmt: skip
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "radclip.card", '{"name": "tiny"}'
    onnx.save(proto, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    from radclip.runtime.onnx_backend import session

    return session(path, threads=1).run(None, {"image": x})[0]


def _sqnr_db(ref: np.ndarray, new: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(ref) / max(float(np.linalg.norm(ref - new)), 1e-12)))


def test_calibration_reader_yields_contract_batches_then_none() -> None:
    images = _images(10, seed=1)
    reader = ContractCalibrationReader(images, input_name="image", batch_size=4)
    batches = []
    while (item := reader.get_next()) is not None:
        batches.append(item)
    assert [set(b) for b in batches] == [{"image"}] * 3
    assert [b["image"].shape for b in batches] == [(4, 1, SIZE, SIZE), (4, 1, SIZE, SIZE), (2, 1, SIZE, SIZE)]
    assert all(b["image"].dtype == np.float32 for b in batches)
    assert len(reader) == 3
    reader.rewind()  # ORT's calibrators may read the set twice
    first = reader.get_next()
    assert first is not None
    np.testing.assert_array_equal(first["image"], images[:4])
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in reader]), images)


def test_calibration_reader_refuses_non_contract_tensors() -> None:
    with pytest.raises(QuantizationError, match=r"\(N, 1, S, S\)"):
        ContractCalibrationReader(np.zeros((4, 3, SIZE, SIZE), np.float32))
    with pytest.raises(QuantizationError, match="empty"):
        ContractCalibrationReader(np.zeros((0, 1, SIZE, SIZE), np.float32))


def test_static_int8_stays_close_to_fp32(fp32_model: Path, tmp_path: Path) -> None:
    assert input_spec(fp32_model) == ("image", SIZE)
    out = quantize_onnx(fp32_model, tmp_path / "tiny.int8.onnx", QuantConfig(), _images(32, seed=2))
    ops = quantized_op_counts(out)
    assert (
        ops.get("QuantizeLinear", 0) >= 3 and ops.get("DequantizeLinear", 0) >= 5
    )  # activations and weights
    test = _images(16, seed=3)  # not the calibration images
    ref, q = _run(fp32_model, test), _run(out, test)
    assert q.shape == ref.shape == (16, 3)
    assert _sqnr_db(ref, q) >= MIN_SQNR_DB, f"int8 SQNR {_sqnr_db(ref, q):.1f} dB < {MIN_SQNR_DB} dB"
    assert np.abs(q - ref).max() <= 0.05 * (np.abs(ref).max() + 1e-6)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["radclip.card"] == '{"name": "tiny"}'  # the model card travels with the int8 file
    assert '"mode": "static"' in meta[QUANT_META_KEY] and '"n_calibration_images": 32' in meta[QUANT_META_KEY]


def test_excluded_nodes_stay_fp32(fp32_model: Path, tmp_path: Path) -> None:
    import onnx

    stem = nodes_through(fp32_model, last_nodes(fp32_model, ("Conv",), 2)[0])
    head = last_nodes(fp32_model, ("Gemm", "MatMul"), 1)
    cfg = QuantConfig(exclude_nodes=tuple(stem + head))
    out = quantize_onnx(fp32_model, tmp_path / "tiny.mixed.onnx", cfg, _images(16, seed=2))
    graph = onnx.load(str(out)).graph
    produced_by_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    kept = {n.name: n for n in graph.node if n.name in set(stem + head)}
    first_conv = next(n for n in kept.values() if n.op_type == "Conv")
    assert first_conv.input[1] not in produced_by_dq  # fp32 weights: no dequantised int8 weight feeds it
    body_conv = next(n for n in graph.node if n.op_type == "Conv" and n.name not in kept)
    assert body_conv.input[1] in produced_by_dq  # the rest is int8
    test = _images(8, seed=4)
    assert _sqnr_db(_run(fp32_model, test), _run(out, test)) >= MIN_SQNR_DB


def test_dynamic_path_and_errors_that_name_the_fix(fp32_model: Path, tmp_path: Path) -> None:
    out = quantize_onnx(fp32_model, tmp_path / "tiny.dyn.onnx", QuantConfig(mode="dynamic"))
    assert "ConvInteger" in quantized_op_counts(out)
    assert _run(out, _images(2, seed=5)).shape == (2, 3)
    with pytest.raises(QuantizationError, match="calibration_images"):
        quantize_onnx(fp32_model, tmp_path / "x.onnx", QuantConfig())
    with pytest.raises(QuantizationError, match="refusing to overwrite"):
        quantize_onnx(fp32_model, fp32_model, QuantConfig(mode="dynamic"))
    with pytest.raises(QuantizationError, match="nodes_through"):
        quantize_onnx(
            fp32_model, tmp_path / "x.onnx", QuantConfig(exclude_nodes=("/no/such/Conv",)), _images(4, seed=6)
        )
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.shared_data
def test_calibration_images_come_from_the_train_split(cxr_manifest: Path) -> None:
    from radclip.export.quantize import calibration_images

    images = calibration_images(cxr_manifest, cxr_manifest.parent, size=SIZE, n=4, split="train")
    assert images.shape == (4, 1, SIZE, SIZE) and images.dtype == np.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    again = calibration_images(cxr_manifest, cxr_manifest.parent, size=SIZE, n=4, split="train")
    np.testing.assert_array_equal(images, again)  # seeded: the same calibration set every run
