"""Corpus build on Ray Data (issue 16): kill the driver mid-build, resume, and end with the single-process index.

A real local Ray cluster (head + one worker node process, loopback, free ports, private temp dir)
embeds 40 generated PNGs and 2 bad files with a tiny seeded image-text model. The first driver
(a subprocess) is SIGKILLed once two shards are on disk; the rerun must reuse exactly the shards
that were written, embed only the rest, quarantine the 2 bad files with reasons, and leave the
same index as ``StudyIndex.open`` in one process: ids, vectors (1e-6), snapshot key, checksums.
Skips with the reason only when Ray cannot start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from corpus_ray_cluster import LocalRayCluster, RayUnavailable

SRC = Path(__file__).resolve().parents[2] / "src"
SHARD_SIZE = 6
N_GOOD = 40

DRIVER = textwrap.dedent("""
    import json, sys, time
    from functools import partial
    from pathlib import Path
    from radclip.engine.corpus import records_from_folder
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.ray_corpus import RayCorpusConfig, build_with_ray

    address, weights, corpus, database, root, shard_size, slow = sys.argv[1:8]
    def progress(done, total):
        if slow == "1" and done:
            time.sleep(1.5)  # leaves time to kill this driver between two shard writes
    config = RayCorpusConfig(address=address, shard_size=int(shard_size), batch_size=4, actors=2, keep_shards=True)
    report = build_with_ray(records_from_folder(Path(corpus)), default_image_embedder(weights),
                            partial(default_image_embedder, weights), config, database=database, root=root,
                            progress=progress)
    print("SUMMARY " + json.dumps(report.summary()), flush=True)
""")


def _tiny_clip(folder: Path) -> Path:
    import torch

    from radclip.models.card import ModelCard
    from radclip.models.clip import tiny_config
    from radclip.models.registry import create_model
    from radclip.models.weights import save_state_dict

    torch.manual_seed(0)
    model = create_model("medclip_tiny")
    out = folder / "tiny-clip.safetensors"
    sha = save_state_dict(model.state_dict(), out)
    ModelCard(name="tiny-clip", architecture="medclip", version="test-0", task="clip", weights_file=out.name,
              weights_sha256=sha, config=tiny_config().to_dict(), preprocessing=model.preprocessing).save(
        out.with_name("tiny-clip.card.json"))  # fmt: skip
    return out


def _corpus(folder: Path) -> Path:
    from PIL import Image

    for i in range(N_GOOD):
        rng = np.random.default_rng(100 + i)
        Image.fromarray((rng.random((64, 64)) * 255).astype("uint8"), mode="L").save(folder / f"case{i:02d}.png")
    (folder / "case07b_truncated.png").write_bytes((folder / "case07.png").read_bytes()[:60])
    (folder / "case23b_notanimage.png").write_bytes(b"this is a text file, not a PNG\n" * 4)
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    try:
        c = LocalRayCluster(workers=1, cpus_per_node=1, env=env, start_timeout_s=60).start()
    except RayUnavailable as exc:
        pytest.skip(f"Ray cannot start here: {exc}")
    try:
        yield c
    finally:
        c.stop()


def _driver(c: LocalRayCluster, tmp: Path, weights: Path, corpus: Path, slow: bool) -> subprocess.Popen[str]:
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(SRC), "RADCLIP_HOME": str(tmp / "home"), "RAY_USAGE_STATS_ENABLED": "0"}
    args = [sys.executable, str(script), c.address, str(weights), str(corpus), f"sqlite:///{tmp / 'ray.db'}",
            str(tmp / "ray-index"), str(SHARD_SIZE), "1" if slow else "0"]  # fmt: skip
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _written(shards: Path) -> set[str]:
    return {p.stem for p in shards.glob("*.json")} if shards.is_dir() else set()


@pytest.mark.timeout(300)
def test_killed_driver_resumes_and_matches_single_process(cluster: LocalRayCluster, tmp_path: Path) -> None:
    from radclip.engine.corpus import records_from_folder
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.index import IndexStore
    from radclip.engine.ray_corpus import plan_shards
    from radclip.engine.study_index import StudyIndex

    weights = _tiny_clip(tmp_path)
    (tmp_path / "corpus").mkdir()
    corpus = _corpus(tmp_path / "corpus")
    records = records_from_folder(corpus)
    assert len(records) == N_GOOD + 2
    embedder = default_image_embedder(str(weights))
    plans = plan_shards(records, SHARD_SIZE, embedder.version)
    assert len(plans) == 7

    # 1. The single-process reference.
    ref = StudyIndex(embedder, f"sqlite:///{tmp_path / 'ref.db'}", root=tmp_path / "ref-index")
    ref_report = ref.open(records)
    assert sorted(ref_report.failed) == ["case07b_truncated", "case23b_notanimage"]

    # 2. A driver killed (SIGKILL) after two shards are on disk.
    shards = tmp_path / "ray-index" / "ray-shards"
    first = _driver(cluster, tmp_path, weights, corpus, slow=True)
    deadline = time.monotonic() + 120
    while len(_written(shards)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    out1 = first.communicate(timeout=30)[0]
    kept = _written(shards)
    assert 2 <= len(kept) < len(plans), f"the first driver should die part-way: {sorted(kept)}\n{out1[-3000:]}"
    assert not list((tmp_path / "ray-index").glob("*.manifest.json")), "nothing is merged before every shard is in"

    # 3. The rerun embeds only what is missing.
    second = _driver(cluster, tmp_path, weights, corpus, slow=False)
    out2 = second.communicate(timeout=180)[0]
    assert second.returncode == 0, out2[-3000:]
    summary = json.loads(next(line for line in out2.splitlines() if line.startswith("SUMMARY "))[8:])
    missing = [p for p in plans if p.name not in kept]
    assert summary["shards_reused"] == len(kept)
    assert summary["shards_written"] == len(missing)
    assert summary["processed_now"] == sum(len(p.records) for p in missing) < len(records)
    assert summary["quarantined"] == 2 and summary["embedded"] == N_GOOD
    reasons = {q["study_id"]: q["reason"] for q in summary["quarantine"]}
    assert set(reasons) == {"case07b_truncated", "case23b_notanimage"} and all(len(r) > 5 for r in reasons.values())

    # 4. The same index as the single-process build, verified from disk.
    assert summary["key"] == ref_report.key.slug
    ray_store = IndexStore(tmp_path / "ray-index")
    loaded = ray_store.load(ref_report.key)
    assert loaded.index is not None, f"the merged index does not load and verify: {loaded.reason}"
    ref_loaded = IndexStore(tmp_path / "ref-index").load(ref_report.key)
    assert ref_loaded.index is not None
    v_ray, ids_ray = loaded.index.vectors_and_ids()
    v_ref, ids_ref = ref_loaded.index.vectors_and_ids()
    order_ray, order_ref = np.argsort(ids_ray), np.argsort(ids_ref)
    np.testing.assert_array_equal(ids_ray[order_ray], ids_ref[order_ref])
    np.testing.assert_allclose(v_ray[order_ray], v_ref[order_ref], atol=1e-6, rtol=0)
    manifest = json.loads((tmp_path / "ray-index" / f"{ref_report.key.slug}.manifest.json").read_text())
    ref_manifest = json.loads((tmp_path / "ref-index" / f"{ref_report.key.slug}.manifest.json").read_text())
    assert manifest["key"] == ref_manifest["key"] and manifest["live"] == ref_manifest["live"] == N_GOOD

    # the database rows behind the ids name the same studies
    ray_index = StudyIndex(embedder, f"sqlite:///{tmp_path / 'ray.db'}", root=tmp_path / "ray-index")
    assert ray_index.open(records).loaded  # warm start: checksums and counts verify, nothing embedded
    ids = [int(i) for i in ids_ref]
    assert {i: m["study_id"] for i, m in ray_index.metadata(ids).items()} == {i: m["study_id"] for i, m in ref.metadata(ids).items()}
