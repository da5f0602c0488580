"""Benchmark the engine's embedding index and screening path on synthetic embeddings.

Synthetic data with realistic structure: each vector is a shared mean direction plus a
32-dim latent projected to 512-d plus isotropic noise, then L2-normalised (CLIP image
embeddings sit in a narrow cone with low intrinsic dimension). Queries are fresh draws
from the same distribution, not database members.

Measures, per size (10k, 100k, 1M): build time, single-query p50/p95 latency (one thread,
as the service issues them), recall@10 against exact search for several HNSW efSearch
values, and bytes per million vectors. Then screening latency for 60 and 1,000 conditions.

    nice .venv/bin/python benchmarks/index_bench.py                      # everything
    nice .venv/bin/python benchmarks/index_bench.py --sizes 10000 --part index
Results are merged into benchmarks/results/index_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from radclip.engine.index import IndexConfig, VectorIndex

DIM, LATENT = 512, 32
OUT = Path(__file__).with_name("results") / "index_bench.json"


def synthetic(n: int, seed: int, basis_seed: int = 7, chunk: int = 100_000) -> np.ndarray:
    """(n, 512) float32 rows: mean + latent @ W + noise, normalised. Same basis for every call."""
    basis = np.random.default_rng(basis_seed)
    w = basis.standard_normal((LATENT, DIM)).astype(np.float32) / np.sqrt(LATENT)  # rows of z @ w ~ N(0, 1)
    mean = basis.standard_normal(DIM).astype(np.float32)
    mean *= 0.8 / np.linalg.norm(mean)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = rng.standard_normal((m, LATENT)).astype(np.float32)
        x = z @ w * (0.6 / np.sqrt(DIM)) + mean  # latent part has norm ~0.6
        x += rng.standard_normal((m, DIM)).astype(np.float32) * (0.35 / np.sqrt(DIM))
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for s in range(0, len(base), chunk):
        sims = queries @ base[s : s + chunk].T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        cand_s = np.take_along_axis(sims, part, axis=1)
        all_s, all_i = np.hstack([best_s, cand_s]), np.hstack([best_i, part + s])
        order = np.argsort(-all_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
    return best_i


def latency(index: VectorIndex, queries: np.ndarray, k: int = 10) -> tuple[dict, np.ndarray]:
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, i = index.search(q[None], k)
        times.append(time.perf_counter() - t0)
        ids.append(i[0])
    t = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3)}, np.array(ids)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(found, truth, strict=True)]))


def file_bytes(index: VectorIndex) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.faiss")
        faiss.write_index(index._index, p)
        return os.path.getsize(p)


def bench_size(n: int, n_queries: int, ef_values: list[int], cfg: IndexConfig) -> dict:
    import faiss

    base = synthetic(n, seed=1)
    queries = synthetic(n_queries, seed=2)
    truth = exact_topk(base, queries, 10)
    ids = np.arange(n, dtype=np.int64)
    res: dict = {"n": n, "queries": n_queries}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    flat = VectorIndex.build(base, ids, cfg, kind="flat")
    faiss.omp_set_num_threads(1)
    lat, found = latency(flat, queries[: min(n_queries, 200)])
    res["flat"] = {**lat, "recall_at_10": recall_at_k(found, truth[: len(found)]), "bytes_per_million": file_bytes(flat) * 1e6 / n}
    del flat
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    hnsw = VectorIndex.build(base, ids, cfg, kind="hnsw")
    res["hnsw_build_s"] = round(time.perf_counter() - t0, 2)
    res["hnsw_bytes_per_million"] = file_bytes(hnsw) * 1e6 / n
    faiss.omp_set_num_threads(1)
    res["hnsw"] = {}
    for ef in ef_values:
        faiss.downcast_index(hnsw._index.index).hnsw.efSearch = ef
        lat, found = latency(hnsw, queries)
        res["hnsw"][str(ef)] = {**lat, "recall_at_10": round(recall_at_k(found, truth), 4)}
        print(f"n={n} efSearch={ef}: {res['hnsw'][str(ef)]}", flush=True)
    return res


def bench_screening(n_conditions: int, reps: int = 300) -> dict:
    from radclip.engine.rules import StudyContext
    from radclip.engine.screening import Screener, StaticConditions

    rng = np.random.default_rng(3)
    names = [f"cond_{i}" for i in range(n_conditions)]
    mat = synthetic(n_conditions, seed=4)
    screener = Screener(StaticConditions(names, ["other"] * n_conditions, mat, text_version="bench"))
    emb = synthetic(1, seed=5)[0]
    ctx = StudyContext(age_years=float(rng.integers(20, 80)), sex="F", view="PA")
    screener.screen(emb, ctx)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        screener.screen(emb, ctx)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1000
    return {"conditions": n_conditions, "p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3)}


def markdown(results: dict) -> str:
    """The tables quoted in docs/engine.md."""
    lines = ["| vectors | kind | efSearch | build s | query p50 ms | query p95 ms | recall@10 | MB per 1M vectors |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for n, r in results.get("index", {}).items():
        f = r["flat"]
        lines.append(f"| {int(n):,} | flat (exact) | – | – | {f['p50_ms']} | {f['p95_ms']} | {f['recall_at_10']:.3f} | {f['bytes_per_million'] / 1e6:,.0f} |")
        for ef, h in r["hnsw"].items():
            lines.append(f"| {int(n):,} | HNSW M={results['config']['hnsw_m']} | {ef} | {r['hnsw_build_s']} | {h['p50_ms']} | "
                         f"{h['p95_ms']} | {h['recall_at_10']:.3f} | {r['hnsw_bytes_per_million'] / 1e6:,.0f} |")  # fmt: skip
    if results.get("screening"):
        lines += ["", "| registered conditions | screening p50 ms | screening p95 ms |", "| ---: | ---: | ---: |"]
        lines += [f"| {s['conditions']:,} | {s['p50_ms']} | {s['p95_ms']} |" for s in results["screening"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--part", choices=["all", "index", "screening", "markdown"], default="all")
    args = ap.parse_args()
    if args.part == "markdown":
        print(markdown(json.loads(OUT.read_text())))
        return
    cfg = IndexConfig()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}
    results["config"] = {"hnsw_m": cfg.hnsw_m, "ef_construction": cfg.ef_construction, "dim": DIM, "latent": LATENT}
    if args.part in ("all", "index"):
        results.setdefault("index", {})
        for n in args.sizes:
            results["index"][str(n)] = bench_size(n, args.queries, args.ef, cfg)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=1))
    if args.part in ("all", "screening"):
        results["screening"] = [bench_screening(k) for k in (60, 1000)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
