#!/usr/bin/env bash
# Runs the whole suite from .venv. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
# Tests never download weights: keep the Hugging Face stack offline.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check src tests
.venv/bin/python -m pytest -q "$@"
