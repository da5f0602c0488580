"""Per-finding operating points: the confidence at or above which a finding is reported as present.

The rule (docs/integration.md, "What the record holds"):

- **Triage findings** use the model card's own operating point when it ships one
  (``calibration.operating_points[label]``, or ``calibration.xrv_op_thresholds[label]`` for the
  TorchXRayVision adapter). Otherwise 0.5: radclip's triage probabilities are calibrated by
  a per-label temperature and intercept on the validation split, so 0.5 is where a finding becomes
  more likely present than absent.
- **Zero-shot findings** use 0.5 on the confidence of the condition's fitted logistic
  calibration (:mod:`radclip.engine.calibration`), the same cut-off the clinical rules use.
  A condition with no fitted calibration scores through a fixed default map that is not a
  probability, so it is never reported as present: it stays in the below-threshold summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEFAULT_OPERATING_POINT = 0.5
NEVER = math.inf  # an uncalibrated zero-shot score is never reported as present


def triage_operating_points(
    labels: tuple[str, ...] | list[str], calibration: Mapping[str, Any] | None
) -> dict[str, float]:
    """The operating point of each triage label from the card's calibration block (see the module docstring)."""
    cal = calibration or {}
    shipped = cal.get("operating_points") or cal.get("xrv_op_thresholds") or {}
    out = {}
    for label in labels:
        value = shipped.get(label)
        ok = isinstance(value, int | float) and math.isfinite(value) and 0.0 < float(value) < 1.0
        out[label] = float(value) if ok else DEFAULT_OPERATING_POINT
    return out


def zero_shot_operating_point(calibrated: bool) -> float:
    """0.5 for a calibrated zero-shot confidence; :data:`NEVER` for the uncalibrated default map."""
    return DEFAULT_OPERATING_POINT if calibrated else NEVER
