"""The frozen evaluation prompt set: templates and finding phrases that training captions never use.

Training captions come from ``TEMPLATES`` / ``NEGATIVE_TEMPLATES`` / ``FINDING_PHRASES`` in
:mod:`radclip.models.prompts`; scoring a model with those same sentences measures recall of its training
captions, not transfer. This set is worded differently (templates and phrases both), is checked against
every caption the trainer can build (``tests/eval/test_prompt_set_leakage.py``), and is frozen by a
sha256 (:data:`EVAL_PROMPT_SET_SHA256`): changing a word changes every number measured with it, so a
change must come with a new name and a re-measurement, never an edit in place.

Conditions: the 14 NIH findings and ``no_finding`` (for *prompt transfer*: trained labels, unseen
wording) plus ``pediatric_pneumonia`` and ``covid19`` (for the conditions evaluated beyond the NIH labels).
"""

from __future__ import annotations

import hashlib
import json
import re

EVAL_PROMPT_SET_NAME = "radclip-eval-prompts-v1"

EVAL_TEMPLATES: tuple[str, ...] = (
    "the radiograph is notable for {}.",
    "imaging of the thorax reveals {}.",
    "impression: {}.",
    "on this film {} can be seen.",
    "the x-ray image of the chest shows {}.",
)
EVAL_NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "the radiograph is not notable for {}.",
    "imaging of the thorax reveals no {}.",
    "impression: no {}.",
    "on this film no {} can be seen.",
    "the x-ray image of the chest shows no {}.",
)

# Positive phrases per condition; none is a training phrase (FINDING_PHRASES), see the leakage test.
EVAL_PHRASES: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "plate-like atelectasis",
        "partial collapse of the lung",
        "atelectatic change at the lung base",
    ),
    "Cardiomegaly": ("an enlarged heart", "increased cardiothoracic ratio", "a large cardiac shadow"),
    "Effusion": ("fluid in the pleural space", "a layering pleural effusion", "a moderate pleural effusion"),
    "Infiltration": (
        "infiltrative opacities",
        "ill-defined parenchymal infiltrates",
        "an infiltrate in the lung",
    ),
    "Mass": ("a mass in the chest", "a soft tissue mass in the lung", "a large pulmonary mass lesion"),
    "Nodule": ("a solitary pulmonary nodule", "a nodule in the lung", "a few small lung nodules"),
    "Pneumonia": ("pneumonic infiltrates", "an area of pneumonia", "a pneumonic process in the lung"),
    "Pneumothorax": (
        "a collapsed lung from pneumothorax",
        "air in the pleural space",
        "a visible pleural line with pneumothorax",
    ),
    "Consolidation": (
        "airspace consolidation of the lung",
        "a consolidated lobe",
        "an area of consolidation",
    ),
    "Edema": ("edema of the lungs", "fluid overload with pulmonary edema", "interstitial and alveolar edema"),
    "Emphysema": ("emphysematous lungs", "centrilobular emphysema", "lungs with emphysema"),
    "Fibrosis": ("fibrotic lung disease", "fibrosis of the lungs", "interstitial scarring from fibrosis"),
    "Pleural_Thickening": (
        "thickening of the pleura",
        "a thickened pleural surface",
        "pleural thickening at the apex",
    ),
    "Hernia": (
        "a hernia through the diaphragm",
        "herniation of the stomach into the chest",
        "a hiatus hernia",
    ),
    "no_finding": ("a normal study", "unremarkable heart and lungs", "no abnormality in the chest"),
    "pediatric_pneumonia": ("pneumonia in a child", "bacterial or viral pneumonia", "childhood pneumonia"),
    "covid19": ("covid-19 pneumonia", "sars-cov-2 infection of the lungs", "coronavirus disease 2019"),
}
# What a negative prompt negates (the bare finding, no article); no_finding is negated by an abnormal study.
EVAL_NEGATED: dict[str, str] = {
    "Atelectasis": "atelectatic lung",
    "Cardiomegaly": "enlarged heart",
    "Effusion": "fluid in the pleural space",
    "Infiltration": "infiltrative opacity",
    "Mass": "mass in the chest",
    "Nodule": "nodule in the lung",
    "Pneumonia": "pneumonic process",
    "Pneumothorax": "air in the pleural space",
    "Consolidation": "area of consolidation",
    "Edema": "edema of the lungs",
    "Emphysema": "emphysematous change",
    "Fibrosis": "fibrotic lung disease",
    "Pleural_Thickening": "thickening of the pleura",
    "Hernia": "hernia through the diaphragm",
    "no_finding": "",  # handled in eval_negative_prompts
    "pediatric_pneumonia": "pneumonia in this child",
    "covid19": "covid-19 pneumonia",
}
_ABNORMAL = "an abnormality in the chest"

# The frozen digest of this set (prompt_set_digest()); a test fails when the content no longer matches it.
EVAL_PROMPT_SET_SHA256 = "d89989de3a20f87ba6b546c3a03981cdbfdc7b9500feea1b6ace614262400443"


def eval_positive_prompts(condition: str, template: str | None = None) -> list[str]:
    """Every evaluation template x every phrase of ``condition`` (or one template)."""
    templates = EVAL_TEMPLATES if template is None else (template,)
    return [t.format(p) for t in templates for p in EVAL_PHRASES[_known(condition)]]


def eval_negative_prompts(condition: str, template: str | None = None) -> list[str]:
    """Prompts stating ``condition`` is absent (for no_finding: stating an abnormality is present)."""
    if _known(condition) == "no_finding":
        return [t.format(_ABNORMAL) for t in (EVAL_TEMPLATES if template is None else (template,))]
    templates = EVAL_NEGATIVE_TEMPLATES if template is None else (template,)
    return [t.format(EVAL_NEGATED[condition]) for t in templates]


def all_eval_prompts() -> list[str]:
    """Every positive and negative evaluation prompt, all conditions."""
    return [p for c in EVAL_PHRASES for p in (*eval_positive_prompts(c), *eval_negative_prompts(c))]


def _known(condition: str) -> str:
    if condition not in EVAL_PHRASES:
        raise KeyError(
            f"no evaluation prompts for {condition!r}; the frozen set covers {sorted(EVAL_PHRASES)}"
        )
    return condition


def normalise_text(text: str) -> str:
    """Lower case, punctuation to spaces, whitespace collapsed: the form prompts are compared in."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def prompt_set_digest() -> str:
    """sha256 of the set's content (templates, phrases, negations), independent of dict order."""
    body = {
        "templates": EVAL_TEMPLATES,
        "negative_templates": EVAL_NEGATIVE_TEMPLATES,
        "phrases": {k: EVAL_PHRASES[k] for k in sorted(EVAL_PHRASES)},
        "negated": {k: EVAL_NEGATED[k] for k in sorted(EVAL_NEGATED)},
        "abnormal": _ABNORMAL,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def leaked_prompts(prompts: list[str], captions: list[str]) -> list[str]:
    """The prompts whose normalised text equals, or occurs word-aligned inside, a normalised caption."""
    haystack = "\n".join(f" {normalise_text(c)} " for c in captions)
    return [p for p in prompts if f" {normalise_text(p)} " in haystack]
