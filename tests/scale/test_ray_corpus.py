"""Corpus build on Ray Data (issue 16): kill the driver mid-build, resume, and end with the single-process index.

A real local Ray cluster (head + one worker node process, loopback, free ports, private temp dir)
embeds 40 generated PNGs and 2 bad files with a tiny seeded image-text model. The first driver
(a subprocess) is SIGKILLed once two shards are on disk; the rerun (``radclip index CORPUS --ray
ADDRESS``) must reuse exactly the shards that were written, embed only the rest, quarantine the 2 bad
files with reasons, and leave the same index as ``StudyIndex.open`` in one process: ids, vectors (1e-6), snapshot key, checksums.
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
from ray_cluster import LocalRayCluster, RayUnavailable

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


def _corpus(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(N_GOOD):
        rng = np.random.default_rng(100 + i)
        Image.fromarray((rng.random((64, 64)) * 255).astype("uint8"), mode="L").save(
            folder / f"case{i:02d}.png"
        )
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


def _env(tmp: Path, weights: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "RADCLIP_HOME": str(tmp / "home"), "RADCLIP_CLIP_MODEL": str(weights),
            "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip


def _slow_driver(c: LocalRayCluster, tmp: Path, weights: Path, corpus: Path) -> subprocess.Popen[str]:
    """build_with_ray with a pause after each shard: the first run, killed part-way."""
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    args = [sys.executable, str(script), c.address, str(weights), str(corpus), f"sqlite:///{tmp / 'ray.db'}",
            str(tmp / "home" / "index"), str(SHARD_SIZE), "1"]  # fmt: skip
    return subprocess.Popen(args, env=_env(tmp, weights), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def _cli(c: LocalRayCluster, tmp: Path, weights: Path, corpus: Path) -> subprocess.CompletedProcess[str]:
    """The rerun, through the command line: ``radclip index CORPUS --ray ADDRESS``."""
    args = [sys.executable, "-m", "radclip.cli", "index", str(corpus), "--ray", c.address, "--database",
            f"sqlite:///{tmp / 'ray.db'}", "--shard-size", str(SHARD_SIZE), "--batch-size", "4", "--ray-actors", "2",
            "--keep-shards", "--no-progress"]  # fmt: skip
    return subprocess.run(args, env=_env(tmp, weights), capture_output=True, text=True, timeout=180)


def _written(shards: Path) -> set[str]:
    return {p.stem for p in shards.glob("*.json")} if shards.is_dir() else set()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_driver_resumes_and_matches_single_process(cluster: LocalRayCluster, tmp_path: Path) -> None:
    from radclip.engine.corpus import records_from_folder
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.index import IndexStore
    from radclip.engine.ray_corpus import plan_shards
    from radclip.engine.study_index import StudyIndex
    from radclip.models.tiny_artifacts import write_tiny_clip

    weights = write_tiny_clip(tmp_path)
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
    ray_root = tmp_path / "home" / "index"
    shards = ray_root / "ray-shards"
    first = _slow_driver(cluster, tmp_path, weights, corpus)
    deadline = time.monotonic() + 120
    while len(_written(shards)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    out1 = first.communicate(timeout=30)[0]
    kept = _written(shards)
    assert 2 <= len(kept) < len(plans), (
        f"the first driver should die part-way: {sorted(kept)}\n{out1[-3000:]}"
    )
    assert not list(ray_root.glob("*.manifest.json")), "nothing is merged before every shard is in"

    # 3. The rerun (the CLI) embeds only what is missing.
    second = _cli(cluster, tmp_path, weights, corpus)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    missing = [p for p in plans if p.name not in kept]
    assert summary["shards_reused"] == len(kept)
    assert summary["shards_written"] == len(missing)
    assert summary["processed_now"] == sum(len(p.records) for p in missing) < len(records)
    assert summary["quarantined"] == 2 and summary["embedded"] == N_GOOD
    reasons = {q["study_id"]: q["reason"] for q in summary["quarantine"]}
    assert set(reasons) == {"case07b_truncated", "case23b_notanimage"} and all(
        len(r) > 5 for r in reasons.values()
    )

    # 4. The same index as the single-process build, verified from disk.
    assert summary["key"] == ref_report.key.slug
    ray_store = IndexStore(ray_root)
    loaded = ray_store.load(ref_report.key)
    assert loaded.index is not None, f"the merged index does not load and verify: {loaded.reason}"
    ref_loaded = IndexStore(tmp_path / "ref-index").load(ref_report.key)
    assert ref_loaded.index is not None
    v_ray, ids_ray = loaded.index.vectors_and_ids()
    v_ref, ids_ref = ref_loaded.index.vectors_and_ids()
    order_ray, order_ref = np.argsort(ids_ray), np.argsort(ids_ref)
    np.testing.assert_array_equal(ids_ray[order_ray], ids_ref[order_ref])
    np.testing.assert_allclose(v_ray[order_ray], v_ref[order_ref], atol=1e-6, rtol=0)
    manifest = json.loads((ray_root / f"{ref_report.key.slug}.manifest.json").read_text())
    ref_manifest = json.loads((tmp_path / "ref-index" / f"{ref_report.key.slug}.manifest.json").read_text())
    assert manifest["key"] == ref_manifest["key"] and manifest["live"] == ref_manifest["live"] == N_GOOD

    # the database rows behind the ids name the same studies
    ray_index = StudyIndex(embedder, f"sqlite:///{tmp_path / 'ray.db'}", root=ray_root)
    assert ray_index.open(records).loaded  # warm start: checksums and counts verify, nothing embedded
    ids = [int(i) for i in ids_ref]
    assert {i: m["study_id"] for i, m in ray_index.metadata(ids).items()} == {
        i: m["study_id"] for i, m in ref.metadata(ids).items()
    }


def test_shard_store_refuses_damaged_or_foreign_shards(tmp_path: Path) -> None:
    """No Ray needed: a shard is reused only when its checksum, digest and members match the plan."""
    from radclip.engine.ray_corpus import Quarantined, ShardData, ShardStore, plan_shards
    from radclip.engine.study_index import StudyRecord

    for i in range(5):
        (tmp_path / f"s{i}.png").write_bytes(b"x" * (10 + i))
    records = [StudyRecord(study_id=f"s{i}", image_path=str(tmp_path / f"s{i}.png")) for i in range(5)]
    plan = plan_shards(records, 5, "model@1")[0]
    store = ShardStore(tmp_path / "shards")
    vecs = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    store.write(
        plan,
        ShardData(
            ["s0", "s1", "s2", "s4"], vecs, [Quarantined("s3", records[3].image_path, "CorruptImageError: x")]
        ),
    )
    got = store.read(plan, dim=8)
    assert got is not None and got.keys == ["s0", "s1", "s2", "s4"] and got.quarantined[0].study_id == "s3"
    np.testing.assert_array_equal(got.vectors, vecs)
    assert store.read(plan, dim=16) is None  # another model width
    assert (
        store.read(plan_shards(records, 5, "model@2")[0], dim=8) is None
    )  # another model: another name, not found
    (tmp_path / "s4.png").write_bytes(b"changed")  # a member's file changed size: a new digest
    assert store.read(plan_shards(records, 5, "model@1")[0], dim=8) is None
    npz, _ = store.paths(plan)
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    assert store.read(plan, dim=8) is None  # flipped byte: the sha256 in the json no longer matches
    npz.write_bytes(bytes(data[: len(data) // 3]))
    assert store.read(plan, dim=8) is None  # truncated


DOWN_DRIVER = textwrap.dedent("""
    import sys
    from functools import partial
    from pathlib import Path
    from radclip.engine.corpus import records_from_folder
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.ray_corpus import RayCorpusConfig, build_with_ray
    from radclip.engine.study_index import ImageSourceDown, default_load_fn

    def down_factory(size):  # the image server goes down at case30: fetching it fails, not decoding it
        load = default_load_fn(size)
        def fetch(path):
            if path.endswith("case30.png"):
                raise ImageSourceDown("image server http://pacs.invalid:8042 is down: connection refused; rerun to resume")
            return load(path)
        return fetch

    address, weights, corpus, database, root = sys.argv[1:6]
    config = RayCorpusConfig(address=address, shard_size=6, batch_size=4, actors=2, keep_shards=True)
    try:
        build_with_ray(records_from_folder(Path(corpus)), default_image_embedder(weights),
                       partial(default_image_embedder, weights), config, database=database, root=root,
                       load_factory=down_factory)
    except ImageSourceDown as exc:
        print("DOWN " + str(exc), flush=True)
        sys.exit(3)
""")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_source_down_inside_an_actor_stops_the_build_with_its_message(cluster: LocalRayCluster, tmp_path: Path) -> None:
    """An actor's ImageSourceDown reaches the driver as ImageSourceDown (not Ray's wrapped traceback), nothing merged."""
    from radclip.models.tiny_artifacts import write_tiny_clip

    weights = write_tiny_clip(tmp_path)
    corpus = _corpus(tmp_path / "corpus")
    script = tmp_path / "down_driver.py"
    script.write_text(DOWN_DRIVER)
    root = tmp_path / "home" / "index"
    args = [sys.executable, str(script), cluster.address, str(weights), str(corpus), f"sqlite:///{tmp_path / 'd.db'}", str(root)]
    run = subprocess.run(args, env=_env(tmp_path, weights), capture_output=True, text=True, timeout=180)
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == (
        "DOWN image server http://pacs.invalid:8042 is down: connection refused; rerun to resume"
    )
    assert not list(root.glob("*.manifest.json")), "a build stopped by a down source merges nothing"
    shards = root / "ray-shards"
    assert not any("case30" in p.read_text() for p in shards.glob("*.json")), "case30 is not quarantined: a down source stops the build"


def test_source_down_read_out_of_rays_wrapped_error() -> None:
    """Ray Data (2.60) re-raises an actor's error as RayTaskError(UserCodeException) with only the remote
    traceback's text; the ImageSourceDown line is read back out of it, and nothing else is mistaken for it."""
    from radclip.engine.ray_corpus import source_down_in
    from radclip.engine.study_index import ImageSourceDown

    remote_text = (  # the shape of str(exc) observed from ray 2.60 (pid, paths shortened)
        "\x1b[36mray::MapWorker(MapBatches(EmbedActor)).submit()\x1b[39m (pid=1, ip=127.0.0.1)\n"
        '  File "/x/ray_corpus.py", line 203, in __call__\n'
        "    tensors.append(self.load(path))\n"
        "radclip.engine.study_index.ImageSourceDown: DICOMweb server http://h:8042 is down: timed out\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    )
    found = source_down_in(RuntimeError(remote_text))
    assert isinstance(found, ImageSourceDown) and str(found) == "DICOMweb server http://h:8042 is down: timed out"
    original = ImageSourceDown("down")
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = original
    assert source_down_in(wrapped) is original
    assert source_down_in(ValueError("ImageSourceDown is mentioned, but not as a raised error line")) is None
    assert source_down_in(RuntimeError("some.module.OtherError: the PNG is truncated")) is None
