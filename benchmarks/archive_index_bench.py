"""Benchmark the archive-scale IVF-PQ index (exact float16 re-rank) at 1M and 10M vectors.

Vectors come from a Gaussian mixture fitted to real v2 embeddings: ``--images`` train-split images
of the shared corpus (all sources) embedded with the shipped image-text model, k-means into
``--components`` clusters, each cluster's mean plus a shared low-rank within-cluster covariance
(top ``RANK`` principal directions of the residuals) plus isotropic noise for the rest, then
L2-normalised. Chunk ``i`` of the base set is drawn from its own seed, so any chunk can be
regenerated (ground truth, resume) without storing the float32 base; queries are fresh draws.

Phases, all resumable under ``--work DIR/<n>``: ``build`` adds chunks of 100k and checkpoints
(IndexStore save) every ``--checkpoint`` rows, skipping rows already in the checkpoint on rerun;
``truth`` is exact top-10 for the queries by chunked matmul; ``probe`` runs in a fresh process:
loads the saved index, records RSS before/after and p50/p95 per query on one FAISS thread plus
recall@10 for each (nprobe, rerank) setting.

    nice -n 15 .venv/bin/python benchmarks/archive_index_bench.py --n 1000000
    nice -n 15 .venv/bin/python benchmarks/archive_index_bench.py --n 10000000   # hours; rerun resumes
Results are merged into benchmarks/results/archive_index_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from radclip.engine import ivfpq
from radclip.engine.index import IndexConfig, IndexKey, IndexStore, VectorIndex

OUT = Path(__file__).with_name("results") / "archive_index_bench.json"
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr"
RANK, CHUNK = 48, 100_000
KEY = IndexKey("0" * 64, "archive-bench@1")


def rss() -> dict[str, int]:
    """VmRSS / RssAnon / RssFile of this process in bytes (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            out[name] = int(rest.split()[0]) * 1024
    return out


def real_embeddings(n_images: int, cache: Path) -> np.ndarray:
    if cache.is_file():
        return np.load(cache)
    import csv

    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.study_index import default_load_fn

    with open(DATA / "manifest.csv") as f:
        paths = [r["path"] for r in csv.DictReader(f) if r["split"] == "train"]
    rng = np.random.default_rng(0)
    paths = [paths[i] for i in sorted(rng.choice(len(paths), min(n_images, len(paths)), replace=False))]
    embedder = default_image_embedder()
    load = default_load_fn(embedder.input_size)  # type: ignore[attr-defined]
    out = [embedder.encode_images(np.stack([load(str(DATA / p)) for p in paths[i : i + 16]])) for i in range(0, len(paths), 16)]
    emb = np.concatenate(out).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    return emb


def fit_mixture(emb: np.ndarray, components: int) -> dict[str, np.ndarray]:
    """Cluster means, weights, a shared rank-RANK residual basis (scaled by its std) and the isotropic rest."""
    import faiss

    km = faiss.Kmeans(emb.shape[1], components, niter=50, seed=1, spherical=True)
    km.train(emb)
    _, assign = km.index.search(emb, 1)
    assign = assign[:, 0]
    means = np.stack([emb[assign == c].mean(0) if (assign == c).any() else km.centroids[c] for c in range(components)])
    resid = emb - means[assign]
    _, s, vt = np.linalg.svd(resid, full_matrices=False)
    std = s / np.sqrt(len(emb) - 1)
    rest = float(np.sqrt((std[RANK:] ** 2).sum() / (emb.shape[1] - RANK)))
    weights = np.bincount(assign, minlength=components).astype(np.float64)
    return {"means": means.astype(np.float32), "weights": weights / weights.sum(),
            "basis": (vt[:RANK] * std[:RANK, None]).astype(np.float32), "rest": np.float32(rest)}  # fmt: skip


def draw(mix: dict[str, np.ndarray], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comp = rng.choice(len(mix["weights"]), n, p=mix["weights"])
    x = mix["means"][comp] + rng.standard_normal((n, RANK), dtype=np.float32) @ mix["basis"]
    x += rng.standard_normal(x.shape, dtype=np.float32) * mix["rest"]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chunk(mix: dict, n: int, i: int) -> np.ndarray:
    return draw(mix, min(CHUNK, n - i * CHUNK), seed=1_000 + i)


def mixture_check(mix: dict, emb: np.ndarray) -> dict:
    """Does the mixture look like the real embeddings? Mean pairwise and nearest-neighbour cosine."""
    syn = draw(mix, len(emb), seed=99)

    def stats(x: np.ndarray) -> dict:
        s = x @ x.T
        np.fill_diagonal(s, np.nan)
        return {"mean_pairwise_cos": round(float(np.nanmean(s)), 4), "mean_nn_cos": round(float(np.nanmax(s, 1).mean()), 4)}

    return {"real": stats(emb), "synthetic": stats(syn)}


def build(mix: dict, n: int, work: Path, cfg: IndexConfig, checkpoint: int) -> dict:
    import faiss

    store, prog_path = IndexStore(work / "store"), work / "build.json"
    prog = json.loads(prog_path.read_text()) if prog_path.is_file() else {"rows": 0, "seconds": 0.0}
    index = store.load(KEY, cfg).index if prog["rows"] else None
    if index is None or index.ntotal != prog["rows"]:
        index, prog = VectorIndex(mix["means"].shape[1], "ivfpq", cfg), {"rows": 0, "seconds": 0.0}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0, rss0 = time.perf_counter(), rss()
    first = max(cfg.ivf_train_size, 39 * cfg.ivf_nlist)
    i = index.ntotal // CHUNK
    while index.ntotal < n:
        # the first add trains on its own rows: give it enough chunks for the training sample
        take = max(1, -(-first // CHUNK)) if index.ntotal == 0 else 1
        vecs = np.concatenate([chunk(mix, n, j) for j in range(i, min(i + take, -(-n // CHUNK)))])
        index.add(vecs, np.arange(i * CHUNK, i * CHUNK + len(vecs), dtype=np.int64))
        i += take
        if index.ntotal % checkpoint < CHUNK * take or index.ntotal == n:
            store.save(KEY, index)
            prog = {"rows": index.ntotal, "seconds": prog["seconds"] + time.perf_counter() - t0}
            t0 = time.perf_counter()
            prog_path.write_text(json.dumps(prog))
            print(f"{index.ntotal:,} rows, {prog['seconds']:.0f} s", flush=True)
    return {"build_s": round(prog["seconds"], 1), "build_rss_delta_bytes": rss()["VmRSS"] - rss0["VmRSS"]}


def truth(mix: dict, n: int, queries: np.ndarray, work: Path, k: int = 10) -> np.ndarray:
    path = work / f"truth_{len(queries)}.npy"
    if path.is_file():
        return np.load(path)
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for i in range(-(-n // CHUNK)):
        sims = queries @ chunk(mix, n, i).T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        all_s = np.hstack([best_s, np.take_along_axis(sims, part, 1)])
        all_i = np.hstack([best_i, part + i * CHUNK])
        order = np.argsort(-all_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
    np.save(path.with_name(f"{path.stem}_scores.npy"), best_s)  # float32 cosines: the float16 re-rank error
    np.save(path, best_i)
    return best_i


def cold_latency(index: VectorIndex, queries: np.ndarray) -> dict:
    """Per-query latency with the vector file evicted from the page cache before each query (fadvise),
    with the re-rank prefetch (``ivf_prefetch``) on and off, alternating per query (A/B in one run)."""
    path = index._vectors.path  # type: ignore[union-attr]
    times: dict[bool, list[float]] = {True: [], False: []}
    base = index.config
    for n, q in enumerate(queries):
        for prefetch in ((True, False) if n % 2 else (False, True)):
            index.config = replace(base, ivf_prefetch=prefetch)
            index._vectors._mm = None  # type: ignore[union-attr]  # unmap: mapped pages can't be evicted
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # this file's clean pages only
            os.close(fd)
            t = time.perf_counter()
            index.search(q[None], 10)
            times[prefetch].append(time.perf_counter() - t)
    index.config = base
    out: dict = {"queries": len(queries), "nprobe": index.config.ivf_nprobe, "rerank": index.rerank_depth}
    for prefetch, key in ((True, "prefetch"), (False, "no_prefetch")):
        ms = np.array(times[prefetch]) * 1000
        out[key] = {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}
    out["p50_ratio_no_prefetch_over_prefetch"] = round(out["no_prefetch"]["p50_ms"] / out["prefetch"]["p50_ms"], 2)
    return out


def probe(work: Path, queries_path: Path, truth_path: Path, settings: list[tuple[int, int]], cold: int = 0) -> dict:
    """In a fresh process: load the saved index, then latency and recall per (nprobe, rerank)."""
    import faiss

    faiss.omp_set_num_threads(1)
    queries, gt = np.load(queries_path), np.load(truth_path)
    gt_s = np.load(truth_path.with_name(f"{truth_path.stem}_scores.npy"))
    before = rss()
    t0 = time.perf_counter()
    loaded = IndexStore(work / "store").load(KEY)
    assert loaded.index is not None, loaded.reason
    index, load_s, after_load = loaded.index, time.perf_counter() - t0, rss()
    res: dict = {"load_s": round(load_s, 1), "index_bytes": index.memory_bytes(), "ntotal": index.ntotal,
                 "nlist": int(index._index.nlist), "settings": {}}  # fmt: skip
    for nprobe, rerank in settings:
        index.config = replace(index.config, ivf_nprobe=nprobe, ivf_rerank=rerank)
        index._apply_search_params()
        index.search(queries[:20], 10)  # warm the lists and the touched pages
        times, times_off, found, scores = [], [], [], []
        on, off = index.config, replace(index.config, ivf_prefetch=False)
        for n, q in enumerate(queries):  # prefetch on and off, alternating which goes first (same results: tested)
            for cfg in ((on, off) if n % 2 else (off, on)):
                index.config = cfg
                t = time.perf_counter()
                s, i = index.search(q[None], 10)
                (times if cfg is on else times_off).append(time.perf_counter() - t)
            found.append(i[0])
            scores.append(s[0])
        index.config = on
        same = np.array(found) == gt  # same id at the same rank: float16 re-rank score vs float32 exact
        err = float(np.abs(np.array(scores)[same] - gt_s[same]).max()) if same.any() else float("nan")
        ms = np.array(times) * 1000
        rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, gt, strict=True)]))
        res["settings"][f"{nprobe}/{rerank}"] = {"nprobe": nprobe, "rerank": rerank, "p50_ms": round(float(np.percentile(ms, 50)), 3),
                                                 "p95_ms": round(float(np.percentile(ms, 95)), 3), "recall_at_10": round(rec, 4),
                                                 "max_abs_score_error": err,
                                                 "no_prefetch_p50_ms": round(float(np.percentile(np.array(times_off) * 1000, 50)), 3),
                                                 "no_prefetch_p95_ms": round(float(np.percentile(np.array(times_off) * 1000, 95)), 3)}  # fmt: skip
        print(f"nprobe={nprobe} R={rerank}: {res['settings'][f'{nprobe}/{rerank}']}", flush=True)
    if cold:
        index.config = replace(index.config, ivf_nprobe=IndexConfig.ivf_nprobe, ivf_rerank=IndexConfig.ivf_rerank,
                               ivf_prefetch=True)
        index._apply_search_params()
        res["cold"] = cold_latency(index, queries[:cold])
        print(f"cold: {res['cold']}", flush=True)
    end = rss()
    res["rss_load_delta_bytes"] = {k: after_load[k] - before[k] for k in before}
    res["rss_after_queries_delta_bytes"] = {k: end[k] - before[k] for k in before}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--components", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path("/tmp/radclip-archive-bench"))
    ap.add_argument("--checkpoint", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=0, help="inverted lists (0: ~4 sqrt(n), as VectorIndex.build)")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--rerank", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--cold", type=int, default=100, help="queries timed with the vector file evicted from the page cache")
    ap.add_argument("--probe-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.work / str(args.n)
    work.mkdir(parents=True, exist_ok=True)
    settings = [(p, r) for p in args.nprobe for r in args.rerank]
    if args.probe_only:
        print("PROBE " + json.dumps(probe(work, work / "queries.npy", work / f"truth_{args.queries}.npy", settings, args.cold)))
        return
    emb = real_embeddings(args.images, args.work / "real_embeddings.npy")
    mix = fit_mixture(emb, args.components)
    # nlist from the final size (VectorIndex.build does this itself; here rows arrive in chunks)
    cfg = replace(IndexConfig(), ivf_nlist=args.nlist or ivfpq.auto_nlist(args.n), ivf_scratch_dir=str(work / "scratch"))
    queries = draw(mix, args.queries, seed=2)
    np.save(work / "queries.npy", queries)
    res: dict = {"n": args.n, "queries": args.queries, "real_images": len(emb), "components": args.components, "rank": RANK,
                 "mixture_check": mixture_check(mix, emb), "config": {k: v for k, v in vars(cfg).items() if k.startswith("ivf")}}  # fmt: skip
    res.update(build(mix, args.n, work, cfg, args.checkpoint))
    t0 = time.perf_counter()
    truth(mix, args.n, queries, work)
    res["truth_s"] = round(time.perf_counter() - t0, 1)
    res["disk_bytes"] = {p.name.split(".", 1)[-1]: p.stat().st_size for p in (work / "store").iterdir() if not p.name.startswith(".")}
    out = subprocess.run([sys.executable, __file__, "--probe-only", "--n", str(args.n), "--queries", str(args.queries),
                          "--work", str(args.work), "--cold", str(args.cold), "--nprobe", *map(str, args.nprobe), "--rerank", *map(str, args.rerank)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    res["probe"] = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PROBE "))[6:])
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()}
    results.setdefault("runs", {})[str(args.n)] = res
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps(res["probe"]["settings"], indent=1))


if __name__ == "__main__":
    main()
