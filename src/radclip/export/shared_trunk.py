"""One ONNX graph for /screen when the triage network and the image tower share trunk blocks.

An image tower initialised from the triage backbone with its leading blocks frozen computes the
same early feature maps. :func:`shared_blocks` finds how many leading ``features`` blocks are
bit-identical (module structure, weights and BatchNorm buffers) and :class:`ScreenGraph` computes
them once:

    contract tensor -> preprocessing -> shared blocks -+-> triage blocks -> logits, cams
                                                       +-> tower blocks -> head -> embedding

Nothing is approximated: the outputs equal the two separate graphs (checked by :func:`check_screen`
before the file is listed). With no shared block nothing is written: both networks side by side in
one graph were measured slower (4.8 ms, one 2-thread pool) than the two graphs as two 1-thread
sessions run in parallel (4.2 ms), which is what the service then does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from radclip.export.onnx_export import ExportedModel, _card_meta, _export, triage_head
from radclip.models.preprocess import to_model_input
from radclip.models.weights import sha256_file


def _sequential_trunks(triage: nn.Module, clip: nn.Module) -> tuple[nn.Sequential, nn.Sequential] | None:
    """The two ``features`` stacks when both are plain ``nn.Sequential`` trunks used as-is, else None."""
    trunk = getattr(getattr(clip, "visual", None), "trunk", None)
    tf, cf = getattr(triage, "features", None), getattr(trunk, "features", None)
    if not isinstance(tf, nn.Sequential) or not isinstance(cf, nn.Sequential):
        return None
    if not getattr(triage, "plain_features", False):  # e.g. DenseNet applies a ReLU after its features
        return None
    if not getattr(trunk, "_pool", False):
        return None
    return tf, cf


def shared_blocks(triage: nn.Module, triage_pre: Any, clip: nn.Module) -> int:
    """How many leading trunk blocks the two models share exactly (0: nothing to fuse)."""
    trunks = _sequential_trunks(triage, clip)
    if trunks is None or triage_pre != clip.preprocessing:
        return 0
    n = 0
    for a, b in zip(*trunks, strict=False):
        sa, sb = a.state_dict(), b.state_dict()
        same = repr(a) == repr(b) and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        if not same:
            break
        n += 1
    return n


class ScreenGraph(nn.Module):
    """Contract tensor -> (triage logits, triage CAMs, L2-normalised image embedding); shared blocks run once."""

    def __init__(self, triage: Any, triage_pre: Any, clip: Any, n_shared: int) -> None:
        super().__init__()
        trunks = _sequential_trunks(triage, clip)
        if trunks is None or n_shared < 1:
            raise ValueError("the two models share no trunk blocks; export them separately")
        tf, cf = trunks
        self.triage: Any = triage
        self.clip: Any = clip
        self.pre = triage_pre
        self.shared, self.triage_tail, self.clip_tail = tf[:n_shared], tf[n_shared:], cf[n_shared:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.shared(to_model_input(x, self.pre))
        logits, cams = triage_head(self.triage, self.triage_tail(h))  # tail(h) == triage.forward_features (plain_features)
        embedding = F.normalize(self.clip.visual.head(self.clip_tail(h).mean(dim=(2, 3))), dim=-1)
        return logits, cams, embedding


def export_screen(triage: nn.Module, triage_card: Any, clip: nn.Module, clip_card: Any, out_dir: Path,
                  opset: int = 17) -> tuple[ExportedModel | None, int]:  # fmt: skip
    """Write ``<triage>+<clip>.screen.onnx`` when blocks are shared; returns (artifact or None, shared blocks)."""
    triage, clip = triage.eval(), clip.eval()
    n = shared_blocks(triage, triage_card.preprocessing, clip)
    if n == 0:
        return None, 0
    size = triage_card.preprocessing.input_size
    path = out_dir / f"{triage_card.name}+{clip_card.name}.screen.onnx"
    meta = {**_card_meta(triage_card, triage_card.preprocessing), "radclip.partner_card": _card_meta(clip_card, clip.preprocessing)["radclip.card"],
            "radclip.shared_blocks": str(n)}  # fmt: skip
    _export(ScreenGraph(triage, triage_card.preprocessing, clip, n), (torch.rand(2, 1, size, size),), path, ["image"],
            ["logits", "cams", "embedding"], {"image": {0: "batch"}, "logits": {0: "batch"}, "cams": {0: "batch"}, "embedding": {0: "batch"}},
            meta, opset)  # fmt: skip
    artifact = ExportedModel("screen", path, sha256_file(path), triage_card.name, triage_card.version, triage_card.weights_sha256,
                             partner_name=clip_card.name, partner_sha256=clip_card.weights_sha256)  # fmt: skip
    return artifact, n


def check_screen(triage: Any, triage_card: Any, clip: Any, onnx_path: Path, images: np.ndarray) -> Any:
    """The fused graph against the two separate PyTorch models: logits and embeddings ≤ 1e-4, CAM r ≥ 0.999."""
    from radclip.export.parity import compare_triage
    from radclip.runtime.onnx_backend import session

    logits, cams, emb = session(onnx_path).run(None, {"image": images})
    with torch.inference_mode():
        ref_emb = clip.encode_image(torch.from_numpy(images), normalize=True).numpy()
    return compare_triage("screen", triage, triage_card, images, logits, cams, extra_diff=float(np.abs(emb - ref_emb).max()))
