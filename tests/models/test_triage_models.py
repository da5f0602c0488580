"""Every registered triage architecture: shapes, gradients, predict() contract, CAM = logits identity."""

from __future__ import annotations

import pytest
import torch

from radclip.explain.cam import class_activation_maps
from radclip.models.card import Preprocessing
from radclip.models.preprocess import to_model_input
from radclip.models.registry import create_model, list_architectures
from radclip.models.triage import TRIAGE_ARCHITECTURES, imagenet_mobilenet_file

CHANNELS = {"densenet121_triage": 1024, "mobilenetv2_triage": 1280, "resnet50_triage": 2048}


def test_architectures_registered() -> None:
    assert set(TRIAGE_ARCHITECTURES) <= set(list_architectures())


@pytest.mark.parametrize("arch", TRIAGE_ARCHITECTURES)
def test_shapes_no_nan_and_every_parameter_gets_gradient(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch)
    x = torch.randn(2, 1, 32, 32)  # small: the suite shares two CPU cores
    feats = model.forward_features(x)
    assert feats.shape == (2, CHANNELS[arch], 1, 1)
    assert (feats >= 0).all(), "features must be taken after the final activation"
    logits = model.forward_head(feats)
    assert logits.shape == (2, 14) and torch.isfinite(logits).all()
    assert model.forward_head(feats, pre_logits=True).shape == (2, CHANNELS[arch])
    model(x).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("arch", ["mobilenetv2_triage", "densenet121_triage"])
def test_predict_is_one_pass_and_keeps_mode(arch: str) -> None:
    torch.manual_seed(1)
    model = create_model(arch).eval()
    x = torch.randn(2, 1, 64, 64)  # 2x2 maps, so the CAM mean is a real spatial mean
    out = model.predict(x)
    assert not model.training
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.probs, torch.sigmoid(ref))
    # GAP + linear: the spatial mean of every class activation map is exactly that class's logit
    cams = class_activation_maps(out.features, model.classifier.weight, model.classifier.bias)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), out.logits, rtol=1e-4, atol=1e-4)
    model.train()
    model.predict(x)
    assert model.training, "predict must not flip the model's mode"


def test_mobilenet_imagenet_init_sums_first_conv() -> None:
    state = torch.load(imagenet_mobilenet_file(), map_location="cpu", weights_only=True)
    model = create_model("mobilenetv2_triage", pretrained=True)
    torch.testing.assert_close(model.features[0][0].weight, state["features.0.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.features[18][0].weight, state["features.18.0.weight"])
    # summed kernels on grey x == RGB kernels on x repeated to 3 channels
    rgb = torch.nn.functional.conv2d(torch.ones(1, 3, 8, 8) * 0.3, state["features.0.0.weight"], stride=2, padding=1)
    grey = torch.nn.functional.conv2d(torch.ones(1, 1, 8, 8) * 0.3, model.features[0][0].weight, stride=2, padding=1)
    torch.testing.assert_close(rgb, grey, rtol=1e-5, atol=1e-5)


def test_resnet_pretrained_refused_offline() -> None:
    with pytest.raises(FileNotFoundError, match="no offline ImageNet ResNet-50"):
        create_model("resnet50_triage", pretrained=True)


def test_unknown_architecture_hint() -> None:
    with pytest.raises(KeyError, match="did you mean 'mobilenetv2_triage'"):
        create_model("mobilenet_v2_triage")


def test_preprocess_scalings() -> None:
    x = torch.linspace(0, 1, 16).view(1, 4, 4)
    xrv = to_model_input(x, Preprocessing(input_size=4, scale="xrv", in_chans=1))
    torch.testing.assert_close(xrv[0, 0, 0, 0], torch.tensor(-1024.0))
    torch.testing.assert_close(xrv[0, 0, -1, -1], torch.tensor(1024.0))
    rgb = to_model_input(x, Preprocessing(input_size=4, in_chans=3))
    assert rgb.shape == (1, 3, 4, 4)
    torch.testing.assert_close(rgb[0, 2, 0, 0], torch.tensor((0 - 0.406) / 0.225))
    grey = to_model_input(x, Preprocessing(input_size=4, in_chans=1))
    mean, std = (0.485 + 0.456 + 0.406) / 3, (0.229 + 0.224 + 0.225) / 3
    torch.testing.assert_close(grey[0, 0, -1, -1], torch.tensor((1 - mean) / std))
    with pytest.raises(ValueError, match="8x8"):
        to_model_input(x, Preprocessing(input_size=8))
