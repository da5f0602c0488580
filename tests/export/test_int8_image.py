"""Opt-in int8 image tower: exported with a cosine check, served only when asked, never mixed with fp32 indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    from radclip.export.parity import export_and_check
    from radclip.models.registry import list_shipped
    from radclip.settings import get_settings

    if get_settings().clip_model not in list_shipped():
        pytest.skip("shipped image-text model not present")
    out = tmp_path_factory.mktemp("export")
    list(export_and_check("clip", get_settings().clip_model, out))
    return out


def test_int8_image_tower_is_close_to_fp32_and_served_only_when_asked(exported: Path, tmp_path: Path) -> None:
    from radclip.export.parity import MIN_INT8_COSINE, export_and_check_int8_image, parity_images
    from radclip.models.registry import find_card
    from radclip.runtime.loading import load_clip_runner
    from radclip.runtime.onnx_backend import find_exports
    from radclip.settings import get_settings, load_settings

    name = get_settings().clip_model
    lines = list(export_and_check_int8_image(name, exported, n_calibration=32))
    assert "min cosine to fp32" in lines[0]
    card, _ = find_card(name)
    assert {"clip-image", "clip-image-int8"} <= set(find_exports(exported, card))
    base = {"home": tmp_path, "export_dir": exported, "backend": "onnxruntime"}
    fp32, int8 = load_clip_runner(load_settings(**base)), load_clip_runner(load_settings(**base, int8_image=True))
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert int8.version == fp32.version + "+int8"  # a different index key and calibration key: never mixed
    images = parity_images(card.preprocessing.input_size)
    a, b = fp32.encode_images(images), int8.encode_images(images)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() >= MIN_INT8_COSINE and not np.allclose(a, b, atol=1e-4)  # close, and really int8
    np.testing.assert_allclose(int8.encode_text(["pleural effusion"]), fp32.encode_text(["pleural effusion"]), atol=1e-6)
    # Asked for int8 where there is none: a clear error naming the fix.
    with pytest.raises(RuntimeError, match="--int8-image"):
        load_clip_runner(load_settings(home=tmp_path, export_dir=tmp_path / "empty", backend="auto", int8_image=True))
