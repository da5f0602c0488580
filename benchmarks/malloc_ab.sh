#!/usr/bin/env bash
# A/B of radclip serve's malloc settings (runtime/allocator.py) on the shipped models: interleaved 90 s soaks
# (benchmarks/soak.py, 16 clients) for each variant, ROUNDS rounds; then a summary in benchmarks/results/malloc_ab.json.
#   variants: tuned (thresholds fixed + 2 arenas), thresholds (RADCLIP_MALLOC_ARENA_MAX=0), glibc (off)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}; out=${OUT:-$(mktemp -d)}; w=src/radclip/weights
for i in $(seq "$rounds"); do
  for v in tuned thresholds glibc; do
    case $v in
      tuned) env=(RADCLIP_MALLOC_TUNING=true RADCLIP_MALLOC_ARENA_MAX=2) ;;
      thresholds) env=(RADCLIP_MALLOC_TUNING=true RADCLIP_MALLOC_ARENA_MAX=0) ;;
      glibc) env=(RADCLIP_MALLOC_TUNING=false) ;;
    esac
    env "${env[@]}" PYTHONPATH=src .venv/bin/python benchmarks/soak.py --duration-s 90 \
      --triage-model $w/radclip-mobilenetv2-nih.safetensors --clip-model $w/radclip-medclip-mini.safetensors \
      --out "$out/${v}_$i.json" > "$out/${v}_$i.log" 2>&1
  done
done
.venv/bin/python - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
runs = {}
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    d = json.loads(f.read_text())
    runs.setdefault(f.stem.rsplit("_", 1)[0], []).append({
        "requests": d["requests"], "throughput_rps": d["throughput_rps"], "p50_ms": d["p50_ms"], "p99_ms": d["p99_ms"],
        "errors": d["errors"], "peak_rss_mb": max(s["rss_mb"] for s in d["samples"])})
summary = {v: {k: round(statistics.mean(r[k] for r in rs), 1) for k in ("throughput_rps", "p50_ms", "p99_ms", "peak_rss_mb")}
           for v, rs in runs.items()}
Path("benchmarks/results/malloc_ab.json").write_text(json.dumps({"runs": runs, "mean": summary}, indent=1) + "\n")
print(json.dumps(summary, indent=1))
PY
