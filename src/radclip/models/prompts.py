"""Prompt text for zero-shot classification and label-derived training captions.

Each of the 14 NIH findings (and "no finding") has radiology phrases (``FINDING_PHRASES``);
``TEMPLATES`` turn a phrase into a sentence ("chest x-ray showing {}"), ``NEGATIVE_TEMPLATES``
state its absence ("no {} is seen"). The service screens with the ensembled positive prompts
against the ensembled negative prompts. These sentences are also the training captions, so no
evaluation may score with them: :mod:`radclip.eval.prompt_sets` holds the frozen evaluation wording.
:func:`caption_for_labels` writes a training caption for a label vector, e.g.
"chest x-ray showing small left pleural effusion and cardiomegaly".
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from radclip.io.labels import NIH_LABELS, NO_FINDING

# Phrases a radiologist would write for each finding; the first is the canonical one.
FINDING_PHRASES: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "atelectasis",
        "bibasilar atelectasis",
        "subsegmental atelectasis",
        "volume loss with atelectasis",
        "linear atelectasis",
    ),
    "Cardiomegaly": (
        "cardiomegaly",
        "an enlarged cardiac silhouette",
        "enlarged heart size",
        "mild cardiomegaly",
        "cardiac enlargement",
    ),
    "Effusion": (
        "pleural effusion",
        "small left pleural effusion",
        "right pleural effusion",
        "bilateral pleural effusions",
        "blunting of the costophrenic angle from effusion",
    ),
    "Infiltration": (
        "pulmonary infiltrate",
        "airspace opacity",
        "patchy infiltrates",
        "interstitial infiltrate",
        "hazy airspace disease",
    ),
    "Mass": (
        "a lung mass",
        "a pulmonary mass",
        "a large mass in the lung",
        "a mediastinal mass",
        "a rounded mass lesion",
    ),
    "Nodule": (
        "a pulmonary nodule",
        "a lung nodule",
        "multiple nodules",
        "a small nodular opacity",
        "a spiculated nodule",
    ),
    "Pneumonia": (
        "pneumonia",
        "lobar pneumonia",
        "infectious pneumonia",
        "bilateral pneumonia",
        "focal pneumonia",
    ),
    "Pneumothorax": (
        "pneumothorax",
        "a right pneumothorax",
        "a left apical pneumothorax",
        "a small pneumothorax",
        "a large tension pneumothorax",
    ),
    "Consolidation": (
        "consolidation",
        "lobar consolidation",
        "dense airspace consolidation",
        "right lower lobe consolidation",
        "focal consolidation",
    ),
    "Edema": (
        "pulmonary edema",
        "interstitial edema",
        "vascular congestion and edema",
        "mild pulmonary edema",
        "alveolar edema",
    ),
    "Emphysema": (
        "emphysema",
        "hyperinflated lungs with emphysema",
        "emphysematous changes",
        "bullous emphysema",
        "chronic obstructive changes of emphysema",
    ),
    "Fibrosis": (
        "pulmonary fibrosis",
        "interstitial fibrosis",
        "fibrotic changes",
        "scarring and fibrosis",
        "reticular fibrosis",
    ),
    "Pleural_Thickening": (
        "pleural thickening",
        "apical pleural thickening",
        "pleural scarring",
        "bilateral pleural thickening",
        "thickened pleura",
    ),
    "Hernia": (
        "a hiatal hernia",
        "a hernia",
        "a large hiatal hernia",
        "a retrocardiac hiatal hernia",
        "a diaphragmatic hernia",
    ),
    NO_FINDING: (
        "no acute cardiopulmonary abnormality",
        "a normal chest",
        "clear lungs",
        "no active disease",
        "normal heart and lungs",
    ),
}

# Zero-shot sentence templates (>= 5 per condition, shared by all conditions).
TEMPLATES: tuple[str, ...] = (
    "chest x-ray showing {}.",
    "a chest radiograph with {}.",
    "findings consistent with {}.",
    "there is {}.",
    "frontal chest radiograph demonstrates {}.",
    "{} is present.",
)
NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "chest x-ray showing no {}.",
    "a chest radiograph without {}.",
    "no evidence of {}.",
    "there is no {}.",
    "frontal chest radiograph demonstrates no {}.",
    "{} is absent.",
)
_ARTICLES = ("a ", "an ")


def _bare(phrase: str) -> str:
    for art in _ARTICLES:
        if phrase.startswith(art):
            return phrase[len(art) :]
    return phrase


def positive_prompts(label: str, template: str | None = None) -> list[str]:
    """Prompts stating ``label`` is present: every template x the canonical phrase (or one template)."""
    phrase = FINDING_PHRASES[label][0]
    templates = TEMPLATES if template is None else (template,)
    return [t.format(phrase) for t in templates]


def negative_prompts(label: str, template: str | None = None) -> list[str]:
    """Prompts stating ``label`` is absent (for no_finding: stating an abnormality is present)."""
    if label == NO_FINDING:
        templates = TEMPLATES if template is None else (template,)
        return [t.format("an acute cardiopulmonary abnormality") for t in templates]
    phrase = _bare(FINDING_PHRASES[label][0])
    templates = NEGATIVE_TEMPLATES if template is None else (template,)
    return [t.format(phrase) for t in templates]


def caption_for_labels(
    labels: Sequence[float], no_finding: float | None = None, rng: random.Random | None = None
) -> str:
    """A training caption for one NIH label vector (NIH_LABELS order, 1 = present).

    Positive findings are named with a random phrase each and joined with "and"; with none
    positive the caption states a normal study. ``rng`` picks phrases and a template.
    """
    rng = rng or random.Random(0)
    names = [name for name, v in zip(NIH_LABELS, labels, strict=True) if v == 1]
    template = rng.choice(TEMPLATES)
    if not names:
        return template.format(rng.choice(FINDING_PHRASES[NO_FINDING]))
    phrases = [rng.choice(FINDING_PHRASES[n]) for n in names]
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return template.format(body)


def negated_caption(labels: Sequence[float], rng: random.Random | None = None) -> str:
    """A negation-aware training caption: the positives (or a normal study) plus "no Y" for an absent Y.

    E.g. "chest x-ray showing cardiomegaly. there is no pleural effusion." for an image with
    cardiomegaly and no effusion; for a normal image only the absence sentence, e.g.
    "no evidence of pneumothorax.". Y is drawn among the findings labelled 0 (absent), so the
    caption keeps the image's label vector and teaches the text head that "no Y" goes with
    Y-free images (a frozen MiniLM barely separates "Y" from "no Y").
    """
    rng = rng or random.Random(0)
    absent = [name for name, v in zip(NIH_LABELS, labels, strict=True) if v == 0]
    positive = any(v == 1 for v in labels)
    if not absent:
        return caption_for_labels(labels, rng=rng)
    phrase = _bare(rng.choice(FINDING_PHRASES[rng.choice(absent)]))
    negation = rng.choice(NEGATIVE_TEMPLATES).format(phrase)
    return f"{caption_for_labels(labels, rng=rng)} {negation}" if positive else negation


ZERO_SHOT_LABELS: tuple[str, ...] = (*NIH_LABELS, NO_FINDING)
