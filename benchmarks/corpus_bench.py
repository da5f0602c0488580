"""Benchmark the corpus build: images/s single-process (``StudyIndex.open``) against Ray Data, in the same run.

The corpus is every image under ``<data root>/cxr`` (the v2 shared data: 9,350 PNG/JPEG files,
manifest images and the holdout pool), with the shipped image-text model (settings' ``clip_model``).
``--limit N`` takes N images spread evenly over the sorted listing (so PNG and JPEG sources mix).
Ray runs on a private local cluster started here (one head node, ``--cpus`` CPUs, free ports,
loopback), with ``--actors`` embedding actors of one CPU each; the driver is this process.

    nice -n 15 .venv/bin/python benchmarks/corpus_bench.py                 # the full corpus (slow on 2 cores)
    nice -n 15 .venv/bin/python benchmarks/corpus_bench.py --limit 600     # a short run

Reported per path: wall seconds of the build (listing excluded; the Ray time includes starting the
actors and loading one model copy in each, the single-process time excludes its one model load,
which is reported apart), images/s, and for Ray when its first shard was written. Both indexes
are compared (max |difference| of the vectors). Writes benchmarks/results/corpus_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "scale"))  # the throwaway local cluster helper the Ray test uses
OUT = Path(__file__).with_name("results") / "corpus_bench.json"


def _records(limit: int | None) -> tuple[list, Path]:  # type: ignore[type-arg]
    from radclip.engine.corpus import records_from_folder
    from radclip.settings import get_settings

    folder = get_settings().data_root / "cxr"
    if not folder.is_dir():
        raise SystemExit(f"corpus folder {folder} not found; set RADCLIP_DATA_ROOT to the shared data folder")
    records = records_from_folder(folder)
    if limit and limit < len(records):
        step = len(records) / limit
        records = [records[int(i * step)] for i in range(limit)]
    return records, folder


def single_process(records: list, batch_size: int, work: Path) -> dict:  # type: ignore[type-arg]
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.study_index import StudyIndex

    t0 = time.perf_counter()
    embedder = default_image_embedder()
    load_s = time.perf_counter() - t0
    index = StudyIndex(
        embedder, f"sqlite:///{work / 'single.db'}", root=work / "single", batch_size=batch_size
    )
    t0 = time.perf_counter()
    report = index.open(records)
    secs = time.perf_counter() - t0
    vecs, ids = index.index.vectors_and_ids()  # type: ignore[union-attr]
    return {"model_load_s": round(load_s, 2), "build_s": round(secs, 2), "images": len(records),
            "embedded": report.embedded, "failed": len(report.failed), "images_per_s": round(len(records) / secs, 3),
            "torch_threads": _torch_threads(), "_vectors": vecs[np.argsort(ids)]}  # fmt: skip


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def on_ray(records: list, args: argparse.Namespace, work: Path) -> dict:  # type: ignore[type-arg]
    from ray_cluster import LocalRayCluster

    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.ray_corpus import RayCorpusConfig, build_with_ray
    from radclip.settings import get_settings

    model = get_settings().clip_model
    embedder = default_image_embedder(model)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t_cluster = time.perf_counter()
    with LocalRayCluster(workers=0, cpus_per_node=args.cpus, env=env, start_timeout_s=120) as cluster:
        cluster_s = time.perf_counter() - t_cluster
        marks: list[tuple[float, int]] = []
        config = RayCorpusConfig(address=cluster.address, shard_size=args.shard_size, batch_size=args.batch_size,
                                 actors=args.actors)  # fmt: skip
        t0 = time.perf_counter()
        report = build_with_ray(records, embedder, partial(default_image_embedder, model), config,
                                database=f"sqlite:///{work / 'ray.db'}", root=work / "ray",
                                progress=lambda done, total: marks.append((time.perf_counter(), done)))  # fmt: skip
        secs = time.perf_counter() - t0
        import ray

        ray.shutdown()
    first = next((t for t, d in marks if d > 0), None)
    from radclip.engine.index import IndexStore

    loaded = IndexStore(work / "ray").load(report.open.key)
    vecs, ids = loaded.index.vectors_and_ids()  # type: ignore[union-attr]
    return {"cluster_start_s": round(cluster_s, 2), "build_s": round(secs, 2), "images": len(records),
            "embedded": report.open.embedded, "quarantined": len(report.open.quarantine), "actors": args.actors,
            "cpus": args.cpus, "shard_size": args.shard_size, "images_per_s": round(len(records) / secs, 3),
            "first_shard_s": round(first - t0, 2) if first else None,
            "_vectors": vecs[np.argsort(ids)]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--limit", type=int, default=None, help="at most this many images (spread over the listing)"
    )
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray node")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=256)
    args = ap.parse_args()
    records, folder = _records(args.limit)
    for r in records:  # page cache warm for both paths: the second run must not win by reading from memory
        Path(r.image_path).read_bytes()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="corpus-bench-") as tmp:
        work = Path(tmp)
        single = single_process(records, args.batch_size, work)
        ray_res = on_ray(records, args, work)
    a, b = single.pop("_vectors"), ray_res.pop("_vectors")
    result = {
        "corpus": str(folder), "images": len(records), "limit": args.limit, "single_process": single, "ray": ray_res,
        "ray_over_single": round(ray_res["images_per_s"] / single["images_per_s"], 3),
        "max_abs_vector_diff": float(np.max(np.abs(a - b))) if a.shape == b.shape else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                    "nice": os.nice(0)},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
