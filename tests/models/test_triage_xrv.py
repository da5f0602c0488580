"""torchxrayvision parity: weights (18 -> 14 outputs) and preprocessing on a real PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

xrv = pytest.importorskip("torchxrayvision")

from radclip.io.contract import to_contract_tensor  # noqa: E402
from radclip.io.labels import NIH_LABELS  # noqa: E402
from radclip.models.card import Preprocessing  # noqa: E402
from radclip.models.preprocess import to_model_input  # noqa: E402
from radclip.models.registry import create_model  # noqa: E402
from radclip.models.weights import load_state_dict, save_state_dict  # noqa: E402
from radclip.models.xrv_adapter import XRV_PATHOLOGIES, convert_xrv_state_dict, load_xrv_pretrained  # noqa: E402


def test_pathology_list_matches_installed_xrv() -> None:
    assert list(XRV_PATHOLOGIES) == list(xrv.datasets.default_pathologies)


def test_state_dict_parity_with_xrv_densenet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = xrv.models.DenseNet(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics so a wrong mapping shows
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        ref.classifier.bias.uniform_(-1, 1)
    path = tmp_path / "xrv.safetensors"
    save_state_dict(ref.state_dict(), path)
    ours = create_model("densenet121_triage")
    ours.load_state_dict(convert_xrv_state_dict(load_state_dict(path)), strict=True)
    ours.eval()
    x = torch.rand(1, 1, 224, 224) * 2048 - 1024
    with torch.no_grad():
        want = ref(x)[:, [XRV_PATHOLOGIES.index(lab) for lab in NIH_LABELS]]
    got = ours.predict(x).logits
    # Logits here are O(1e3) (inputs span the xrv range [-1024, 1024]): one float32 ulp is 1.2e-4,
    # and the summation order follows torch's thread count, so the bound is relative at that scale.
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-4)


def test_preprocessing_matches_xrv_on_real_png(cxr_manifest: Path) -> None:
    import pandas as pd
    from PIL import Image

    from radclip.io.datasets import load_pixels

    row = pd.read_csv(cxr_manifest).query("source == 'nih'").iloc[0]
    path = cxr_manifest.parent / row["path"]
    ours = to_model_input(to_contract_tensor(load_pixels(path), 224), Preprocessing(input_size=224, scale="xrv"))[0].numpy()
    img = np.asarray(Image.open(path).convert("L")).astype(np.float32)
    img = xrv.datasets.normalize(img, 255)[None]
    img = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(img))
    np.testing.assert_allclose(ours, img, atol=2e-3)


def _xrv_weights_cached() -> bool:
    return any(Path("~/.torchxrayvision/models_data").expanduser().glob("*nih*"))


@pytest.mark.skipif(not (_xrv_weights_cached() or os.environ.get("RADCLIP_ONLINE_TESTS") == "1"), reason="offline: set RADCLIP_ONLINE_TESTS=1 to let torchxrayvision download densenet121-res224-nih")
def test_online_xrv_nih_weights() -> None:
    model, card = load_xrv_pretrained("densenet121-res224-nih")
    ref = xrv.models.DenseNet(weights="densenet121-res224-nih").eval()
    x = torch.rand(1, 1, 224, 224) * 2048 - 1024
    with torch.no_grad():
        feats = ref.features2(x)
        want = ref.classifier(feats)[:, [list(ref.pathologies).index(lab) for lab in NIH_LABELS]]
    assert (model.predict(x).logits - want).abs().max().item() <= 1e-4
    assert card.preprocessing.scale == "xrv"
