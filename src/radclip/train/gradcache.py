"""Gradient caching (Gao et al., 2021): a large contrastive batch in small chunks of memory.

The contrastive loss couples every image to every text, so it needs the whole batch's
embeddings at once, but the towers' activations need not be kept:

1. embed the batch chunk by chunk **without** a graph (``torch.no_grad``);
2. compute the loss on the detached embeddings and backpropagate it to them (and to any
   parameter the loss uses directly, such as ``logit_scale``): these are the cached gradients;
3. re-embed each chunk **with** a graph and backpropagate its cached gradient slice.

The parameter gradients equal those of one big-batch step (tested), while peak activation
memory is that of one chunk. The RNG state is replayed per chunk so dropout masks match.
BatchNorm layers see each chunk as its own batch (as any chunked forward would) and update
their running statistics in both passes; freeze them (eval mode) where that matters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Encode = Callable[[int, int], torch.Tensor]  # (start, stop) -> embeddings of rows start..stop-1
LossFn = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]  # (img, txt) -> terms with "loss"


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    if size <= 0:
        raise ValueError(f"gradient-cache chunk size must be positive, got {size}")
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _embed_no_grad(encode: Encode, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    states, outs = [], []
    for start, stop in spans:
        states.append(torch.get_rng_state())
        with torch.no_grad():
            outs.append(encode(start, stop))
    return torch.cat(outs), states


def _replay(
    encode: Encode, spans: list[tuple[int, int]], states: list[torch.Tensor], grad: torch.Tensor
) -> None:
    after = torch.get_rng_state()
    for (start, stop), state in zip(spans, states, strict=True):
        torch.set_rng_state(state)
        out = encode(start, stop)
        if out.requires_grad:
            out.backward(gradient=grad[start:stop])
    torch.set_rng_state(after)


def gradcache_backward(
    encode_image: Encode, encode_text: Encode, n_images: int, n_texts: int, loss_fn: LossFn, chunk: int
) -> dict[str, torch.Tensor]:
    """Run steps 1-3 above and leave the big-batch gradients in ``.grad``; returns the loss terms (detached)."""
    img_spans, txt_spans = _chunks(n_images, chunk), _chunks(n_texts, chunk)
    img, img_states = _embed_no_grad(encode_image, img_spans)
    txt, txt_states = _embed_no_grad(encode_text, txt_spans)
    img = img.detach().requires_grad_(True)
    txt = txt.detach().requires_grad_(True)
    terms = loss_fn(img, txt)
    terms["loss"].backward()
    assert img.grad is not None and txt.grad is not None
    _replay(encode_image, img_spans, img_states, img.grad)
    _replay(encode_text, txt_spans, txt_states, txt.grad)
    return {k: v.detach() for k, v in terms.items()}


def full_backward(
    encode_image: Encode, encode_text: Encode, n_images: int, n_texts: int, loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    """The same step without caching (one graph over the whole batch)."""
    terms = loss_fn(encode_image(0, n_images), encode_text(0, n_texts))
    terms["loss"].backward()
    return {k: v.detach() for k, v in terms.items()}
