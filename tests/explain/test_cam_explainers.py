"""CAM/Grad-CAM correctness: parity with pytorch-grad-cam, blob localisation, one-pass CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from radclip.explain.cam import class_activation_maps, normalize_maps, upsample_maps
from radclip.explain.gradcam import CAM, GradCAM, capture_layer
from radclip.explain.overlay import overlay, save_overlay_png
from radclip.models.triage import TriageConfig, TriageNet


class TinyNet(TriageNet):
    """Stride-1 convs so the feature map has the input's size (no resize in comparisons)."""

    def __init__(self, channels: int = 6, num_classes: int = 3) -> None:
        super().__init__(TriageConfig(num_classes=num_classes))
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.num_features = channels
        self._make_head()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _blob_image(size: int = 32, centre: tuple[int, int] = (22, 9), radius: int = 3) -> torch.Tensor:
    yy, xx = np.mgrid[:size, :size]
    img = 0.2 + 0.7 * (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius**2)
    return torch.tensor(img, dtype=torch.float32)[None, None]


def _blob_model() -> TinyNet:
    """Channel 0 = relu(x - 0.5) (bright evidence), channel 1 = relu(0.5 - x) (background)."""
    model = TinyNet(channels=2, num_classes=2)
    with torch.no_grad():
        first, second = model.features[0], model.features[2]
        first.weight.zero_()
        first.weight[0, 0, 1, 1], first.weight[1, 0, 1, 1] = 1.0, -1.0
        first.bias.copy_(torch.tensor([-0.5, 0.5]))
        second.weight.zero_()
        second.weight[0, 0, 1, 1] = second.weight[1, 1, 1, 1] = 1.0
        second.bias.zero_()
        model.classifier.weight.copy_(torch.tensor([[4.0, -1.0], [-1.0, 4.0]]))
        model.classifier.bias.copy_(torch.tensor([-1.0, 0.5]))
    return model.eval()


def test_cam_matches_pytorch_grad_cam_for_gap_linear_head() -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.rand(2, 1, 16, 16)
    with pgc.GradCAM(model=model, target_layers=[model.features[-1]]) as theirs:
        ref = theirs(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2)
    out = model.predict(x)
    ours = torch.relu(
        class_activation_maps(out.features, model.classifier.weight.detach(), None, [1])
    )  # Grad-CAM keeps the positive part
    np.testing.assert_allclose(normalize_maps(ours)[:, 0].numpy(), ref, atol=1e-3)
    ours_grad = GradCAM(model)(x, [1])[:, 0].numpy()
    np.testing.assert_allclose(ours_grad, ref, atol=1e-3)


def test_cam_peaks_on_blob_and_wrong_constructions_do_not() -> None:
    model = _blob_model()
    x = _blob_image()
    out = model.predict(x)
    w, b = model.classifier.weight.detach(), model.classifier.bias.detach()
    cam = class_activation_maps(out.features, w, b, [0])[0, 0]
    blob = x[0, 0] > 0.5
    r, c = divmod(int(cam.argmax()), cam.shape[1])
    assert blob[r, c], "CAM of the bright-blob class must peak on the blob"
    # classic mistake 1: "CAM" from pooled features (or logits) has no spatial information
    pooled = model.forward_head(out.features, pre_logits=True)
    flat = (pooled @ model.classifier.weight[0])[:, None, None].expand(-1, 32, 32)[0]
    r, c = divmod(int(flat.argmax()), 32)
    assert not blob[r, c]
    # classic mistake 2: another class's weights point at the background
    wrong = class_activation_maps(out.features, w, b, [1])[0, 0]
    r, c = divmod(int(wrong.argmax()), 32)
    assert not blob[r, c]
    # Grad-CAM agrees on the blob
    g = GradCAM(model)(x, [0])[0, 0]
    r, c = divmod(int(g.argmax()), 32)
    assert blob[r, c]


def test_cam_from_predict_equals_separate_forward_and_base_class() -> None:
    torch.manual_seed(3)
    model = TinyNet().eval()
    x = torch.rand(2, 1, 16, 16)
    out = model.predict(x)
    with torch.no_grad():
        feats = model.forward_features(x)
    w, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
    a = class_activation_maps(out.features, w, bias, [0, 2])
    b = class_activation_maps(feats, w, bias, [0, 2])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.mean(dim=(2, 3)), out.logits[:, [0, 2]], rtol=1e-5, atol=1e-5)
    via_class = CAM(model)(x, [0, 2], normalize=False)
    torch.testing.assert_close(via_class, a)


def test_explainers_leave_shared_model_untouched() -> None:
    model = TinyNet().eval()
    x = torch.rand(1, 1, 16, 16)
    GradCAM(model)(x, [0, 1])
    GradCAM(model, target_layer=model.features[-1])(x, [0])
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert not model.features[-1]._forward_hooks
    with pytest.raises(RuntimeError), capture_layer(model.features[-1]):
        raise RuntimeError("boom")
    assert not model.features[-1]._forward_hooks, "hook must be removed even on error"


def test_upsample_and_overlay_png(tmp_path: Path) -> None:
    cams = torch.zeros(1, 1, 4, 4)
    cams[0, 0, 0, 0] = 1.0
    up = upsample_maps(cams, 16)
    assert up.shape == (1, 1, 16, 16) and int(up[0, 0].argmax()) == 0
    img = np.full((16, 16), 0.5, dtype=np.float32)
    rgb = overlay(img, normalize_maps(up)[0, 0].numpy(), alpha=0.5)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] > rgb[0, 0, 2], "hot end of jet is red"
    path = save_overlay_png(tmp_path / "o.png", img, [up[0, 0].numpy()], ["x"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (2, 3, 1, 1)], ids=["constant-7x7", "1x1-feature-map"])
def test_normalize_maps_turns_flat_maps_into_zeros_not_nan(shape: tuple[int, ...]) -> None:
    flat = torch.full(shape, 3.5)
    flat[1] = -2.0  # a different constant per map: each map is normalised on its own
    out = normalize_maps(flat)
    assert torch.equal(out, torch.zeros(shape))  # without the clamp: 0/0 = NaN everywhere


def test_normalize_maps_golden_values() -> None:
    cams = torch.tensor([[[[1.0, 3.0], [5.0, 2.0]]]])
    # (x - 1) / (5 - 1)
    assert torch.allclose(normalize_maps(cams), torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]]))


def test_upsample_maps_uses_half_pixel_centres() -> None:
    # 2 -> 4: output pixel x samples source (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]),
    # so along a row 0 -> 1 becomes 0, 0.25, 0.75, 1; aligned corners would give 0, 1/3, 2/3, 1
    cams = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    row = torch.tensor([0.0, 0.25, 0.75, 1.0])
    want = torch.stack([row, row + 0.5, row + 1.5, row + 2.0])[None, None]
    assert torch.allclose(upsample_maps(cams, 4), want)
    assert upsample_maps(cams, (2, 2)) is cams  # already the input size: untouched
