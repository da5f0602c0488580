#!/usr/bin/env bash
# Run one atheris harness from fuzz/: scripts/fuzz.sh HARNESS [--runs N] [--seconds S] [-- extra libFuzzer flags]
# HARNESS is load_image, fhir, upload, labeller, manifest or dicomweb. Seeds come from fuzz/make_seeds.py, and
# fuzz/HARNESS.dict, where there is one, is passed as -dict. New corpus entries go to fuzz/corpus/HARNESS,
# crashers to fuzz/crashes/HARNESS. Each input is bounded in time (-timeout, seconds) and the process in
# memory (-rss_limit_mb, -malloc_limit_mb).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: scripts/fuzz.sh HARNESS [--runs N] [--seconds S] [--timeout S] [--rss-mb MB] [-- libFuzzer flags]" >&2; exit 2; }
[ $# -ge 1 ] || usage
harness=$1; shift
[ -f "fuzz/fuzz_${harness}.py" ] || { echo "no harness fuzz/fuzz_${harness}.py; pick one of: $(ls fuzz/fuzz_*.py | sed 's#fuzz/fuzz_##; s#\.py##' | tr '\n' ' ')" >&2; exit 2; }
runs=1000000; seconds=0; timeout=10; rss_mb=2048
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --rss-mb) rss_mb=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
# The project's venv by default; PYTHON=/path/to/python overrides it (e.g. a shared venv).
default_python=python3; [ -x .venv/bin/python ] && default_python=.venv/bin/python
PYTHON=${PYTHON:-$default_python}
corpus=fuzz/corpus/$harness crashes=fuzz/crashes/$harness
[ -d "$corpus" ] || PYTHONPATH=src "$PYTHON" fuzz/make_seeds.py
mkdir -p "$corpus" "$crashes"
flags=(-runs="$runs" -timeout="$timeout" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" -max_len=65536
       -print_final_stats=1 -artifact_prefix="$crashes/")
[ "$seconds" -gt 0 ] && flags+=(-max_total_time="$seconds")
[ -f "fuzz/${harness}.dict" ] && flags+=(-dict="fuzz/${harness}.dict")  # tokens byte mutation rarely builds
export PYTHONPATH=src:fuzz HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PYTHON" "fuzz/fuzz_${harness}.py" "${flags[@]}" "$@" "$corpus"
