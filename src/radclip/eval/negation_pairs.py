"""The frozen negation pair set: affirmed / negated sentences per condition, for the text-tower negation metric.

Each pair states one finding as present and then as absent, in report-like wording that neither the
training captions (:mod:`radclip.models.prompts`) nor the evaluation prompt set
(:mod:`radclip.eval.prompt_sets`) uses; ``tests/eval/test_negation_pairs.py`` checks both, and that no
sentence occurs word for word among the IU reports the text adapter trains on. Three pairs per
condition, so a label-aware probe can be fitted on the other two (leave one out). Frozen by a sha256
(:data:`NEGATION_PAIRS_SHA256`): a change needs a new name and a re-measurement.
"""

from __future__ import annotations

import hashlib
import json

NEGATION_PAIRS_NAME = "radclip-negation-pairs-v1"

# (condition, affirmed, negated); conditions = the 14 NIH findings + pneumonia in a child + COVID-19.
NEGATION_PAIRS: tuple[tuple[str, str, str], ...] = (
    (
        "Atelectasis",
        "streaky collapse is noted at the left lung base.",
        "the left lung base shows no collapse.",
    ),
    (
        "Atelectasis",
        "discoid atelectatic bands in the right mid zone.",
        "no atelectatic bands in either mid zone.",
    ),
    (
        "Atelectasis",
        "the right lower lobe has lost volume and partially collapsed.",
        "the lower lobes are fully expanded without collapse.",
    ),
    (
        "Cardiomegaly",
        "the heart is enlarged, cardiothoracic ratio above one half.",
        "the heart is not enlarged, cardiothoracic ratio below one half.",
    ),
    (
        "Cardiomegaly",
        "marked globular enlargement of the cardiac outline.",
        "the cardiac outline is of normal size, not enlarged.",
    ),
    (
        "Cardiomegaly",
        "the cardiac shadow is widened in keeping with cardiomegaly.",
        "the cardiac shadow is not widened; no cardiomegaly.",
    ),
    (
        "Effusion",
        "a small pleural effusion on the left blunts the costophrenic recess.",
        "no left pleural effusion; the costophrenic recess is sharp.",
    ),
    (
        "Effusion",
        "fluid tracks up the right lateral chest wall.",
        "no fluid tracks along either lateral chest wall.",
    ),
    ("Effusion", "large effusions are present on both sides.", "neither side has an effusion."),
    (
        "Infiltration",
        "hazy infiltrative shadowing in the right upper zone.",
        "no infiltrative shadowing in the right upper zone.",
    ),
    (
        "Infiltration",
        "ill-defined infiltrates scattered through both lungs.",
        "the lungs are free of infiltrates.",
    ),
    (
        "Infiltration",
        "new patchy infiltration of the left mid zone.",
        "no new infiltration of the left mid zone.",
    ),
    ("Mass", "a rounded 5 cm mass projects over the right hilum.", "no mass projects over either hilum."),
    ("Mass", "a lobulated mass occupies the left upper zone.", "the left upper zone contains no mass."),
    ("Mass", "there is a large mediastinal mass.", "a mediastinal mass is excluded."),
    (
        "Nodule",
        "an 8 mm nodular density in the right lower zone.",
        "no nodular density in the right lower zone.",
    ),
    ("Nodule", "several small rounded nodules in both lungs.", "the lungs contain no rounded nodules."),
    (
        "Nodule",
        "a new spiculated nodule is seen in the left apex.",
        "no spiculated nodule is seen at either apex.",
    ),
    (
        "Pneumonia",
        "right lower lobe pneumonia with air bronchograms.",
        "no pneumonia and no air bronchograms.",
    ),
    (
        "Pneumonia",
        "the left base opacity represents a pneumonic infection.",
        "the left base is clear, without pneumonic infection.",
    ),
    ("Pneumonia", "multilobar bacterial pneumonia is evident.", "bacterial pneumonia is not evident."),
    (
        "Pneumothorax",
        "a large right pneumothorax with mediastinal shift.",
        "no right pneumothorax and no mediastinal shift.",
    ),
    (
        "Pneumothorax",
        "a thin apical pneumothorax is seen on the left.",
        "no apical pneumothorax is seen on the left.",
    ),
    (
        "Pneumothorax",
        "free pleural air outlines the collapsed lung edge.",
        "no free pleural air; the lung edge reaches the chest wall.",
    ),
    (
        "Consolidation",
        "dense consolidation fills the right middle lobe.",
        "the right middle lobe is aerated without consolidation.",
    ),
    (
        "Consolidation",
        "lobar consolidation is present on the left.",
        "lobar consolidation is absent on the left.",
    ),
    (
        "Consolidation",
        "confluent airspace shadowing in both lower zones.",
        "no confluent airspace shadowing in the lower zones.",
    ),
    (
        "Edema",
        "bat-wing perihilar shadowing from pulmonary oedema.",
        "no perihilar shadowing and no pulmonary oedema.",
    ),
    ("Edema", "interstitial oedema with septal kerley lines.", "no interstitial oedema and no septal lines."),
    ("Edema", "florid alveolar oedema in both lungs.", "both lungs are free of alveolar oedema."),
    (
        "Emphysema",
        "hyperinflated lungs with bullous emphysematous change.",
        "the lungs are not hyperinflated; no bullous change.",
    ),
    (
        "Emphysema",
        "flattened hemidiaphragms from severe emphysema.",
        "the hemidiaphragms are domed; no emphysema.",
    ),
    (
        "Emphysema",
        "upper lobe bullae consistent with emphysema.",
        "no upper lobe bullae to suggest emphysema.",
    ),
    (
        "Fibrosis",
        "coarse reticular fibrotic change at both bases.",
        "no coarse reticular fibrotic change at the bases.",
    ),
    (
        "Fibrosis",
        "upper zone fibrotic scarring with hilar retraction.",
        "no upper zone scarring and no hilar retraction.",
    ),
    (
        "Fibrosis",
        "honeycombing in keeping with established lung fibrosis.",
        "no honeycombing; no established lung fibrosis.",
    ),
    (
        "Pleural_Thickening",
        "the pleura over the right apex is thickened.",
        "the pleura over the right apex is not thickened.",
    ),
    ("Pleural_Thickening", "diffuse thickening of the left pleura.", "the left pleura shows no thickening."),
    (
        "Pleural_Thickening",
        "calcified pleural plaques with pleural thickening.",
        "no pleural plaques and no pleural thickening.",
    ),
    (
        "Hernia",
        "a gas-filled hiatal hernia lies behind the heart.",
        "no hiatal hernia lies behind the heart.",
    ),
    (
        "Hernia",
        "bowel loops herniate through the left hemidiaphragm.",
        "no bowel loops herniate through the hemidiaphragm.",
    ),
    (
        "Hernia",
        "a large retrocardiac hernia with an air-fluid level.",
        "no retrocardiac hernia or air-fluid level.",
    ),
    ("pediatric_pneumonia", "the infant has right upper lobe pneumonia.", "the infant has no pneumonia."),
    (
        "pediatric_pneumonia",
        "perihilar pneumonic shadowing in this toddler.",
        "no pneumonic shadowing in this toddler.",
    ),
    (
        "pediatric_pneumonia",
        "round pneumonia in the child's left lower lobe.",
        "no round pneumonia in the child's lungs.",
    ),
    (
        "covid19",
        "bilateral peripheral ground-glass shadowing typical of covid-19.",
        "no peripheral ground-glass shadowing to suggest covid-19.",
    ),
    (
        "covid19",
        "multifocal sars-cov-2 pneumonitis in both lower zones.",
        "no sars-cov-2 pneumonitis in the lower zones.",
    ),
    (
        "covid19",
        "the lung changes are those of coronavirus pneumonia.",
        "the lungs show no coronavirus pneumonia.",
    ),
)

# The frozen digest of the set (pair_set_digest()); a test fails when the content no longer matches it.
NEGATION_PAIRS_SHA256 = "813f5ccce47c628be11ba0b4a8f9b43e60feb58b468ec8bffed0d2378150ca28"


def pair_set_digest() -> str:
    """sha256 of the pair set's content (name + pairs, canonical JSON)."""
    blob = json.dumps({"name": NEGATION_PAIRS_NAME, "pairs": NEGATION_PAIRS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def all_pair_sentences() -> list[str]:
    """Every affirmed and negated sentence of the set."""
    return [s for _, a, n in NEGATION_PAIRS for s in (a, n)]
