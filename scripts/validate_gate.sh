#!/usr/bin/env bash
# Release gate (CI): `radclip validate` on the shared test split against the committed baseline report.
# Exit 1 = a measurable finding's AUC dropped by > 0.02 or a new fairness flag appeared (roll back).
# Skips (exit 0, with a message) when the shared data, the shipped weights or the baseline are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
BASELINE="${RADCLIP_GATE_BASELINE:-docs/reports/report.json}"

DATA_ROOT="$("$PY" -c 'from radclip.settings import get_settings; print(get_settings().data_root)')"
MANIFEST="$DATA_ROOT/cxr/manifest.csv"
if [ ! -f "$MANIFEST" ]; then
  echo "validate_gate: SKIPPED - shared data not found at $MANIFEST (set RADCLIP_DATA_ROOT)"
  exit 0
fi
if ! "$PY" - <<'PY'
import sys
from radclip.models.registry import find_card
from radclip.settings import get_settings

s = get_settings()
for name in (s.triage_model, s.clip_model):
    try:
        card, path = find_card(name)
    except Exception as exc:  # no card: the models are not shipped in this checkout
        print(f"validate_gate: SKIPPED - model {name!r} not available ({exc})")
        sys.exit(1)
    if not (path.parent / (card.weights_file or "")).is_file():
        print(f"validate_gate: SKIPPED - weights file of {name!r} missing next to {path}")
        sys.exit(1)
PY
then
  exit 0
fi
if [ ! -f "$BASELINE" ]; then
  echo "validate_gate: SKIPPED - baseline $BASELINE not found (write it with: radclip report --out docs/reports)"
  exit 0
fi
echo "validate_gate: radclip validate --split test --baseline $BASELINE"
exec "$PY" -m radclip.cli validate --manifest "$MANIFEST" --images-root "$DATA_ROOT/cxr" --split test --baseline "$BASELINE" --n-boot 300
