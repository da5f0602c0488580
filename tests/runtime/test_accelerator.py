"""Accelerator selection (RADCLIP_DEVICE): the pure rule, the probe, the sessions and runners it feeds, /readyz.

No GPU is available to these tests: CUDA-present cases monkeypatch what torch and onnxruntime report
and check the providers and device that would be passed, never a real CUDA session.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from radclip.runtime import accelerator as acc
from radclip.runtime.accelerator import CPU_EP, CUDA_EP, TENSORRT_EP, Accelerator, detect, select_accelerator

ORT_GPU = [
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
]  # what onnxruntime-gpu lists


def test_device_env_name_is_the_settings_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from radclip.settings import ENV_PREFIX, load_settings

    assert f"{ENV_PREFIX}DEVICE" == acc.DEVICE_ENV
    monkeypatch.setenv(acc.DEVICE_ENV, "cpu")
    assert load_settings().device == "cpu"


@pytest.mark.parametrize("cuda", [False, True])
def test_cpu_requested_is_cpu_only_whatever_the_machine(cuda: bool) -> None:
    a = select_accelerator("cpu", cuda_available=cuda, ort_providers=ORT_GPU, tensorrt_libs=True)
    assert (a.device, a.onnx_providers, a.torch_dtype) == ("cpu", (CPU_EP,), "float32")


def test_auto_on_a_cpu_machine_changes_nothing() -> None:
    a = select_accelerator("auto", cuda_available=False, ort_providers=["AzureExecutionProvider", CPU_EP])
    assert (a.device, a.onnx_providers, a.requested) == ("cpu", (CPU_EP,), "auto")
    # onnxruntime-gpu lists its GPU providers even with no GPU: they must not count without a CUDA device
    a = select_accelerator("auto", cuda_available=False, ort_providers=ORT_GPU, tensorrt_libs=True)
    assert (a.device, a.onnx_providers) == ("cpu", (CPU_EP,))


def test_auto_with_cuda_prefers_cuda_then_cpu_fallback() -> None:
    a = select_accelerator("auto", cuda_available=True, ort_providers=[CUDA_EP, CPU_EP])
    assert (a.device, a.onnx_providers, a.torch_dtype) == ("cuda", (CUDA_EP, CPU_EP), "float32")


def test_auto_with_tensorrt_puts_it_first_only_when_its_libraries_load() -> None:
    a = select_accelerator("auto", cuda_available=True, ort_providers=ORT_GPU, tensorrt_libs=True)
    assert a.onnx_providers == (TENSORRT_EP, CUDA_EP, CPU_EP)
    b = select_accelerator("auto", cuda_available=True, ort_providers=ORT_GPU, tensorrt_libs=False)
    assert b.onnx_providers == (CUDA_EP, CPU_EP)
    assert "TensorRT libraries not found" in b.reason


def test_auto_with_cuda_torch_but_cpu_onnxruntime_runs_onnx_on_cpu_and_says_why() -> None:
    a = select_accelerator("auto", cuda_available=True, ort_providers=[CPU_EP])
    assert (a.device, a.onnx_providers) == ("cuda", (CPU_EP,))
    assert "onnxruntime-gpu" in a.reason and "radclip[gpu]" in a.reason


def test_cuda_requested_without_a_cuda_device_names_the_fix() -> None:
    with pytest.raises(RuntimeError) as info:
        select_accelerator("cuda", cuda_available=False, ort_providers=ORT_GPU)
    msg = str(info.value)
    assert "RADCLIP_DEVICE=cuda" in msg and "CUDA build of torch" in msg and "RADCLIP_DEVICE=cpu" in msg


def test_cuda_requested_with_cpu_onnxruntime_names_the_fix_unless_pytorch_only() -> None:
    with pytest.raises(RuntimeError) as info:
        select_accelerator("cuda", cuda_available=True, ort_providers=[CPU_EP])
    msg = str(info.value)
    assert "onnxruntime-gpu" in msg and "radclip[gpu]" in msg and "RADCLIP_BACKEND=pytorch" in msg
    a = select_accelerator("cuda", cuda_available=True, ort_providers=[CPU_EP], backend="pytorch")
    assert (a.device, a.onnx_providers, a.requested) == ("cuda", (CPU_EP,), "cuda")
    a = select_accelerator("cuda", cuda_available=True, ort_providers=[CUDA_EP, CPU_EP])
    assert (a.device, a.onnx_providers) == ("cuda", (CUDA_EP, CPU_EP))


def test_unknown_request_is_refused() -> None:
    with pytest.raises(ValueError, match="RADCLIP_DEVICE='gpu'"):
        select_accelerator("gpu", cuda_available=True, ort_providers=ORT_GPU)


def test_detect_on_this_machine_is_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible; this checks the CPU-only machine")
    a = detect("auto")
    assert (a.device, a.onnx_providers) == ("cpu", (CPU_EP,))
    with pytest.raises(RuntimeError, match="RADCLIP_DEVICE=cpu"):
        detect("cuda")


def test_detect_reads_torch_and_onnxruntime_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(ORT_GPU))
    monkeypatch.setattr(acc, "_tensorrt_libs", lambda: False)
    assert detect("auto").onnx_providers == (CUDA_EP, CPU_EP)
    monkeypatch.setattr(acc, "_tensorrt_libs", lambda: True)
    assert detect("auto").onnx_providers == (TENSORRT_EP, CUDA_EP, CPU_EP)
    assert detect("cpu").onnx_providers == (CPU_EP,)


# --------------------------------------------------------------------------- sessions and runners
@pytest.fixture()
def tiny_onnx(tmp_path: Path) -> Path:
    """A one-node graph (image -> image + 1) with the runners' input name."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["image", "one"], ["out"])], "tiny",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2])], [one])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_default_session_is_cpu_only_and_runs(tiny_onnx: Path) -> None:
    import numpy as np

    from radclip.runtime.onnx_backend import session

    sess = session(tiny_onnx, threads=1)
    assert sess.get_providers() == [CPU_EP]
    out = sess.run(None, {"image": np.array([[1.0, 2.0]], np.float32)})[0]
    assert out.tolist() == [[2.0, 3.0]]
    sess = session(tiny_onnx, threads=1, providers=detect("cpu").onnx_providers)
    assert sess.get_providers() == [CPU_EP]


class _FakeSession:
    """Stands in for ``ort.InferenceSession`` (no CUDA provider can be built here); records what it was given."""

    calls: list[dict[str, Any]] = []
    serves: list[str] | None = None  # what get_providers() answers; None = what was asked

    def __init__(self, path: str, sess_options: Any = None, providers: list[str] | None = None) -> None:
        self.providers = list(providers or [])
        _FakeSession.calls.append({"path": path, "providers": self.providers})

    def get_providers(self) -> list[str]:
        return list(self.serves) if self.serves is not None else self.providers


@pytest.fixture()
def fake_ort(monkeypatch: pytest.MonkeyPatch) -> type[_FakeSession]:
    import onnxruntime as ort

    _FakeSession.calls, _FakeSession.serves = [], None
    monkeypatch.setattr(ort, "InferenceSession", _FakeSession)
    return _FakeSession


GPU_SELECTION = select_accelerator("auto", cuda_available=True, ort_providers=ORT_GPU, tensorrt_libs=True)


def test_session_passes_the_selected_providers_in_order(
    tiny_onnx: Path, fake_ort: type[_FakeSession]
) -> None:
    from radclip.runtime.onnx_backend import session

    session(tiny_onnx, providers=GPU_SELECTION.onnx_providers)
    assert fake_ort.calls[-1]["providers"] == [TENSORRT_EP, CUDA_EP, CPU_EP]
    session(tiny_onnx)
    assert fake_ort.calls[-1]["providers"] == [CPU_EP]


def test_session_warns_when_onnxruntime_fell_back(tiny_onnx: Path, fake_ort: type[_FakeSession],
                                                  caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from radclip.runtime.onnx_backend import session

    fake_ort.serves = [CPU_EP]
    with caplog.at_level("WARNING", logger="radclip.runtime.onnx_backend"):
        session(tiny_onnx, providers=(CUDA_EP, CPU_EP))
    assert any(
        "not ['CUDAExecutionProvider', 'CPUExecutionProvider']" in r.getMessage() for r in caplog.records
    )


def _settings(tmp_path: Path, **kw: Any) -> Any:
    base = {"device": "auto", "backend": "auto", "torch_threads": 1, "triage_model": "t", "clip_model": "c",
            "int8_image": False, "resolved_export_dir": tmp_path}  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


def test_loading_threads_the_selection_into_onnx_and_pytorch_runners(tmp_path: Path, tiny_onnx: Path,
                                                                    fake_ort: type[_FakeSession],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from radclip.runtime import loading
    from radclip.runtime.clip_runner import ClipRunner
    from radclip.runtime.triage_runner import TriageRunner

    card = SimpleNamespace(name="t", version="1", weights_sha256="x", labels=None, calibration=None,
                           config={"text": {"kind": "tiny"}}, preprocessing=SimpleNamespace(input_size=8))  # fmt: skip
    exports = {"triage": tiny_onnx, "clip-image": tiny_onnx, "clip-text": tiny_onnx}
    monkeypatch.setattr(loading, "exports_for", lambda settings, name: (card, exports))
    loading.load_triage_runner(_settings(tmp_path), GPU_SELECTION)
    loading.load_clip_runner(_settings(tmp_path), GPU_SELECTION)
    assert [c["providers"] for c in fake_ort.calls] == [[TENSORRT_EP, CUDA_EP, CPU_EP]] * 3

    loaded: list[tuple[str, str]] = []
    monkeypatch.setattr(
        TriageRunner, "load", classmethod(lambda cls, name, device="cpu": loaded.append((name, device)))
    )
    monkeypatch.setattr(
        ClipRunner, "load", classmethod(lambda cls, name, device="cpu": loaded.append((name, device)))
    )
    monkeypatch.setattr(loading, "exports_for", lambda settings, name: (card, {}))
    loading.load_triage_runner(_settings(tmp_path), GPU_SELECTION)
    loading.load_clip_runner(_settings(tmp_path), GPU_SELECTION)
    loading.load_triage_runner(
        _settings(tmp_path, device="cpu")
    )  # no selection given: RADCLIP_DEVICE decides
    assert loaded == [("t", "cuda"), ("c", "cuda"), ("t", "cpu")]


def test_pytorch_runners_stay_on_cpu_by_default() -> None:
    import torch

    from radclip.runtime.clip_runner import ClipRunner
    from radclip.runtime.triage_runner import TriageRunner

    model = torch.nn.Linear(2, 2)
    model.embed_dim = 2  # type: ignore[assignment]
    card = SimpleNamespace(name="t", version="1", labels=None, calibration=None)
    assert TriageRunner(model, card).device == "cpu" and next(model.parameters()).device.type == "cpu"
    assert ClipRunner(model, card, device=detect("cpu").device).device == "cpu"


# --------------------------------------------------------------------------- /readyz
def _readyz(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """/readyz of a service built by ``build_state`` whose models cannot be found (fast: no weights load)."""
    from fastapi.testclient import TestClient
    from tests.service.access_helpers import make_settings

    from radclip.service.app import create_app
    from radclip.service.state import build_state

    settings = make_settings(tmp_path, triage_model=str(tmp_path / "none.safetensors"),
                             clip_model=str(tmp_path / "none-clip.safetensors"), **overrides)  # fmt: skip
    state = build_state(settings)
    with TestClient(create_app(settings, state=state)) as client:
        body: dict[str, Any] = client.get("/readyz").json()
    state.close()
    return body


def test_readyz_reports_the_selection(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only machine")
    body = _readyz(tmp_path, device="auto")
    assert body["accelerator"] == {"device": "cpu", "onnx_providers": [CPU_EP], "torch_dtype": "float32",
                                   "requested": "auto", "reason": detect("auto").reason}  # fmt: skip
    assert {"status", "models", "index", "screen_path", "load_errors", "database"} <= set(body)


def test_readyz_reports_an_unmet_cuda_request_without_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    body = _readyz(tmp_path, device="cuda")
    assert body["accelerator"]["device"] is None and body["accelerator"]["requested"] == "cuda"
    assert body["load_errors"]["accelerator"] == "RuntimeError (see the server log)"
    assert body["load_errors"]["triage"] == "RuntimeError (see the server log)"  # not silently served on CPU
    assert body["status"] == "degraded"


def test_accelerator_is_frozen() -> None:
    a = Accelerator("cpu", (CPU_EP,), "float32", "cpu", "x")
    with pytest.raises(AttributeError):
        a.device = "cuda"  # type: ignore[misc]
