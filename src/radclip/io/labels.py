"""The 14 NIH ChestX-ray14 findings, in the fixed output order every radclip model uses."""

from __future__ import annotations

NIH_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "no_finding"
# Labeller/report vocabulary: the 14 findings plus "no finding".
REPORT_LABELS: tuple[str, ...] = (*NIH_LABELS, NO_FINDING)

# Values a label can take, CheXpert-style. NaN (not mentioned / unknown) is the fourth state.
POSITIVE = 1.0
NEGATIVE = 0.0
UNCERTAIN = -1.0
