"""Contrastive losses for the image-text model. Every loss returns a dict of named terms.

* :func:`clip_loss`: paired symmetric InfoNCE, ``L = (L_I->T + L_T->I) / 2`` with
  ``logits = scale * img @ txt.T`` and targets on the diagonal (image i's text is text i).
* :func:`semantic_matching_loss`: MedCLIP's decoupled loss (Wang et al., 2022) for *unpaired*
  images and texts: soft targets from the similarity of their label vectors.
* :func:`label_vectors`: how CheXpert-style labels (1 pos, 0 neg, -1 uncertain, NaN unknown)
  become the vectors compared there.

The embeddings passed in are already L2-normalised; ``logit_scale`` is the *multiplier*
``exp(logit_scale)`` (already clamped), as open_clip's ``ClipLoss`` takes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

UNCERTAIN_WEIGHT = 0.5  # an uncertain finding counts half: "possible effusion" is between present and absent


def contrastive_logits(
    img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits_per_image (Ni, Nt), logits_per_text (Nt, Ni))."""
    logits = logit_scale * img @ txt.T
    return logits, logits.T


def clip_loss(
    img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float
) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE over matched rows; terms ``contrastive`` (the loss), ``i2t``, ``t2i``."""
    if img.shape[0] != txt.shape[0]:
        raise ValueError(
            f"paired InfoNCE needs as many texts as images, got {img.shape[0]} images and {txt.shape[0]} texts"
        )
    per_image, per_text = contrastive_logits(img, txt, logit_scale)
    target = torch.arange(img.shape[0], device=img.device)
    i2t = F.cross_entropy(per_image, target)
    t2i = F.cross_entropy(per_text, target)
    return {"contrastive": 0.5 * (i2t + t2i), "i2t": i2t.detach(), "t2i": t2i.detach()}


def label_vectors(labels: torch.Tensor) -> torch.Tensor:
    """CheXpert-style label matrix -> non-negative vectors for label similarity.

    Positive -> 1, uncertain (-1) -> :data:`UNCERTAIN_WEIGHT`, negative (0) and unknown (NaN) -> 0.
    Unknown is read as "not present" because a report that does not mention a finding
    almost never has it; an all-zero row (nothing known) is compared by
    :func:`label_similarity` as similar to nothing.
    """
    v = torch.nan_to_num(labels.float(), nan=0.0)
    return torch.where(v < 0, torch.full_like(v, UNCERTAIN_WEIGHT), v)


def label_similarity(img_labels: torch.Tensor, txt_labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity (Ni, Nt) of the :func:`label_vectors`; rows/columns with no label give 0."""
    a = F.normalize(label_vectors(img_labels), dim=-1, eps=eps)
    b = F.normalize(label_vectors(txt_labels), dim=-1, eps=eps)
    return a @ b.T


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_j targets_ij * log_softmax(logits)_ij``."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def semantic_matching_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    logit_scale: torch.Tensor | float,
    img_labels: torch.Tensor,
    txt_labels: torch.Tensor,
    label_temperature: float = 0.1,
) -> dict[str, torch.Tensor]:
    """MedCLIP's semantic-matching loss over an (Ni images) x (Nt texts) batch.

    ``s = cos(label_vectors(img_labels), label_vectors(txt_labels))`` (Ni, Nt); the image->text
    targets are ``softmax(s / label_temperature)`` over texts for each image, the text->image
    targets ``softmax(s.T / label_temperature)`` over images for each text; each direction is the
    soft cross-entropy against the image-text logits, and the loss is their mean.
    Terms: ``semantic`` (the loss), ``i2t``, ``t2i``.
    """
    sim = label_similarity(img_labels.to(img.device), txt_labels.to(img.device))
    per_image, per_text = contrastive_logits(img, txt, logit_scale)
    i2t = soft_cross_entropy(per_image, F.softmax(sim / label_temperature, dim=1))
    t2i = soft_cross_entropy(per_text, F.softmax(sim.T / label_temperature, dim=1))
    return {"semantic": 0.5 * (i2t + t2i), "i2t": i2t.detach(), "t2i": t2i.detach()}


def contrastive_accuracy(img: torch.Tensor, txt: torch.Tensor) -> float:
    """Fraction of the paired rows whose own text (image) is the top match, mean of both directions."""
    with torch.no_grad():
        sim = img @ txt.T
        target = torch.arange(sim.shape[0], device=sim.device)
        return 0.5 * float(
            (sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean()
        )
