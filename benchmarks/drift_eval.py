"""Measure embedding-drift detection on real shifts from ../shared/data v2 (bounded; embeddings cached in /tmp).

Reference: 300 NIH + 50 covid *train* images. In-distribution: 150 NIH + 50 covid *test* images (bounded for a shared 2-core host).
Shifts: NIH test studies, then Kermany pediatric test images, or then Hannover test images. Image tower:
the shipped ``radclip-medclip-mini``. Statistic: the spec's rolling-mean cosine distance (alert > 0.10),
and MMD with a permutation p-value (alert p < 0.01) for comparison.

    PYTHONPATH=src .venv/bin/python benchmarks/drift_eval.py

Writes benchmarks/results/drift_eval.json.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr"
CACHE = Path("/tmp/radclip-drift-cache")
OUT = Path(__file__).with_name("results") / "drift_eval.json"
WINDOWS = (25, 50)
N_FALSE_ALARM_WINDOWS = 500


def rows(source: str, split: str, n: int, seed: int = 0) -> list[str]:
    with (DATA / f"manifest_{source}.csv").open() as f:
        paths = [r["path"] for r in csv.DictReader(f) if r["split"] == split]
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), min(n, len(paths)), replace=False))]


def embed(name: str, paths: list[str], clip: object) -> np.ndarray:
    CACHE.mkdir(exist_ok=True)
    cached = CACHE / f"{name}.npy"
    if cached.is_file():
        return np.load(cached)
    from radclip.engine.study_index import default_load_fn

    load = default_load_fn(clip.input_size)  # type: ignore[attr-defined]
    out = []
    for i in range(0, len(paths), 16):
        batch = np.stack([load(str(DATA / p)) for p in paths[i : i + 16]])
        out.append(np.asarray(clip.encode_images(batch)))  # type: ignore[attr-defined]
    emb = np.concatenate(out)
    np.save(cached, emb)
    return emb


def delay(stream_in: np.ndarray, shifted: np.ndarray, reference: np.ndarray, window: int) -> int | None:
    """Studies of the shifted source seen before the first window over 0.10 (None: never within the stream)."""
    from radclip.engine.drift import RollingDrift

    d = RollingDrift(reference, window)
    for e in stream_in:
        d.update(e)
    for i, e in enumerate(shifted):
        r = d.update(e)
        if r is not None and r.drifted:
            return i + 1
    return None


def main() -> None:
    from radclip.engine.drift import (
        COSINE_ALERT,
        mean_cosine_distance,
        median_bandwidth,
        mmd_permutation_test,
    )
    from radclip.runtime.clip_runner import ClipRunner

    clip = ClipRunner.load("radclip-medclip-mini")
    ref = np.concatenate(
        [
            embed("nih_train", rows("nih", "train", 300), clip),
            embed("covid_train", rows("covid", "train", 50), clip),
        ]
    )
    nih_test, covid_test = (
        embed("nih_test", rows("nih", "test", 150), clip),
        embed("covid_test", rows("covid", "test", 50), clip),
    )
    kermany, hannover = (
        embed("kermany_test", rows("kermany", "test", 100), clip),
        embed("hannover_test", rows("hannover", "test", 61), clip),
    )
    in_dist = np.concatenate([nih_test, covid_test])
    rng = np.random.default_rng(0)
    ref_mean, bw = ref.mean(axis=0), median_bandwidth(ref)
    result: dict[str, object] = {"reference": "300 NIH + 50 covid train images", "in_distribution": f"{len(in_dist)} NIH+covid test images",
                                 "kermany_images": len(kermany), "hannover_images": len(hannover), "per_window": {}}  # fmt: skip
    for w in WINDOWS:
        dists = [
            mean_cosine_distance(in_dist[rng.choice(len(in_dist), w, replace=False)], ref_mean)
            for _ in range(N_FALSE_ALARM_WINDOWS)
        ]
        mmd_p = [mmd_permutation_test(ref[rng.choice(len(ref), w, replace=False)], in_dist[rng.choice(len(in_dist), w, replace=False)], bw, 100, seed=s)[1]
                 for s in range(50)]  # fmt: skip
        mmd_k = [mmd_permutation_test(ref[rng.choice(len(ref), w, replace=False)], kermany[rng.choice(len(kermany), w, replace=False)], bw, 100, seed=s)[1]
                 for s in range(20)]  # fmt: skip
        result["per_window"][str(w)] = {  # type: ignore[index]
            "false_alarm_rate_cosine": float(np.mean(np.array(dists) > COSINE_ALERT)),
            "in_dist_cosine_p50_p99": [float(np.percentile(dists, 50)), float(np.percentile(dists, 99))],
            "kermany_window_cosine": mean_cosine_distance(kermany[:w], ref_mean),
            "hannover_window_cosine": mean_cosine_distance(hannover[: min(w, len(hannover))], ref_mean),
            "delay_kermany_studies": delay(nih_test[:100], kermany, ref, w),
            "delay_hannover_studies": delay(nih_test[:100], hannover, ref, w),
            "mmd_false_alarm_rate_p<0.01": float(np.mean(np.array(mmd_p) < 0.01)),
            "mmd_detect_rate_kermany_p<0.01": float(np.mean(np.array(mmd_k) < 0.01)),
        }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
