"""Corpus build on Ray Data: decode and embed a study listing across a Ray cluster, in resumable shards.

The records (a folder or a manifest, :mod:`radclip.engine.corpus`) are cut into shards of
``shard_size`` in listing order. Each shard is named by a digest of its members (image key, path,
file size, or for a DICOMweb instance its SOP Instance UID) and the image-model version, so a rerun recognises the shards it already wrote.
Missing shards go through one Ray Data pipeline: ``map_batches`` over an actor pool
(``ActorPoolStrategy(size=actors)``), each actor holding the image tower once and decoding with the
single-process loader (:func:`radclip.engine.study_index.default_load_fn`, or the ``load_factory`` given,
e.g. the DICOMweb fetch of :mod:`radclip.integrations.dicomweb_corpus`: the actors then fetch each
image from the server themselves, the driver only lists). The driver writes
each shard as soon as all of its rows are back (``.npz`` written to a temporary file, fsynced,
renamed, then a ``.json`` with its sha256), so a killed driver loses only the shards in flight.
A file that cannot be decoded is quarantined inside its shard with the reason; it never stops
the job. Once every shard is present, the vectors are handed to :class:`StudyIndex` in listing
order, which inserts the metadata and persists the index exactly as the single-process build
does (same snapshot key, same checksummed manifest, same database ids).

``ray`` is imported only inside :func:`build_with_ray`; nothing else in radclip needs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radclip.engine.encoders import ImageEmbedder, l2_normalise
from radclip.engine.index import IndexConfig, sha256_file
from radclip.engine.study_index import (
    BuildCancelled,
    CancelFlag,
    Embedded,
    ImageSourceDown,
    OpenReport,
    ProgressFn,
    StudyIndex,
    StudyRecord,
    _cancelled,
    content_tag,
    default_load_fn,
    quarantine_reason,
)

log = logging.getLogger(__name__)
EmbedderFactory = Callable[[], ImageEmbedder]  # picklable (a module-level function or functools.partial)
# input size -> (image path -> contract tensor); picklable, like EmbedderFactory
LoadFactory = Callable[[int], Callable[[str], np.ndarray]]
SHARD_FORMAT = 1


@dataclass(frozen=True)
class RayCorpusConfig:
    address: str  # Ray cluster address ("127.0.0.1:PORT", "auto", "ray://HOST:10001")
    shard_size: int = 512  # images per shard file: the unit of resumption (a killed driver redoes at most the shards in flight)
    batch_size: int = 16  # images per model call inside an actor
    actors: int = 2  # actor pool size: each actor holds one copy of the image tower
    actor_cpus: float = 1.0  # CPUs reserved per actor (Ray sets the actor's torch/OMP threads from it)
    keep_shards: bool = False  # keep the shard files after the merged index is saved
    runtime_env: dict[str, Any] | None = (
        None  # passed to ray.init (e.g. env_vars); workers must import radclip
    )

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1 or self.actors < 1:
            raise ValueError(
                f"shard_size, batch_size and actors must be >= 1 (got {self.shard_size}, {self.batch_size}, {self.actors})"
            )


@dataclass(frozen=True)
class Quarantined:
    study_id: str
    image_path: str
    reason: str


@dataclass
class RayBuildReport:
    open: OpenReport  # what StudyIndex.open reported (key, loaded, embedded, failed, live, kind)
    shards_total: int = 0
    shards_reused: int = 0  # valid shards found from an earlier (interrupted) run and skipped
    shards_written: int = 0
    processed_now: int = 0  # images sent through the Ray pipeline in this run (embedded or quarantined)
    ray_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        o = self.open
        return {"key": o.key.slug, "loaded": o.loaded, "reason": o.reason, "embedded": o.embedded, "live": o.live,
                "kind": o.kind, "seconds": round(o.seconds, 2), "shards_total": self.shards_total,
                "shards_reused": self.shards_reused, "shards_written": self.shards_written,
                "processed_now": self.processed_now, "quarantined": len(o.quarantine), "quarantine": o.quarantine,
                "ray_seconds": round(self.ray_seconds, 2)}  # fmt: skip


# -- shards on disk ------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardPlan:
    index: int
    digest: str
    records: tuple[StudyRecord, ...]

    @property
    def name(self) -> str:
        return self.digest[:32]


def plan_shards(records: Sequence[StudyRecord], shard_size: int, model_version: str) -> list[ShardPlan]:
    """Cut ``records`` (listing order) into shards; a shard's digest covers its members and the model."""
    plans = []
    for i, start in enumerate(range(0, len(records), shard_size)):
        chunk = tuple(records[start : start + shard_size])
        h = hashlib.sha256(f"radclip-shard/{SHARD_FORMAT}\t{model_version}\n".encode())
        for r in chunk:
            h.update(f"{r.image_key}\t{r.image_path}\t{content_tag(r)}\n".encode())
        plans.append(ShardPlan(i, h.hexdigest(), chunk))
    return plans


@dataclass
class ShardData:
    keys: list[str]  # image keys embedded, in shard order
    vectors: np.ndarray  # (len(keys), dim) float32, L2-normalised
    quarantined: list[Quarantined]


class ShardStore:
    """``<dir>/<name>.npz`` plus ``<name>.json`` (digest, sha256, counts); the json is written last."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def paths(self, plan: ShardPlan) -> tuple[Path, Path]:
        return self.folder / f"{plan.name}.npz", self.folder / f"{plan.name}.json"

    def write(self, plan: ShardPlan, data: ShardData) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        npz, meta = self.paths(plan)
        tmp = npz.with_name(f".{npz.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(data.keys, dtype=str), vectors=data.vectors.astype(np.float32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, npz)
        info = {"format": SHARD_FORMAT, "digest": plan.digest, "sha256": sha256_file(npz), "embedded": len(data.keys),
                "quarantine": [asdict(q) for q in data.quarantined]}  # fmt: skip
        tmp_meta = meta.with_name(f".{meta.name}.tmp-{os.getpid()}")
        tmp_meta.write_text(json.dumps(info, indent=1))
        with open(tmp_meta, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_meta, meta)

    def read(self, plan: ShardPlan, dim: int) -> ShardData | None:
        """The shard if it is complete and intact (checksum, digest, members), else None (it is redone)."""
        npz, meta = self.paths(plan)
        try:
            info = json.loads(meta.read_text())
            if (
                info.get("format") != SHARD_FORMAT
                or info.get("digest") != plan.digest
                or sha256_file(npz) != info.get("sha256")
            ):
                raise ValueError("digest or checksum mismatch")
            with np.load(npz, allow_pickle=False) as z:
                keys, vectors = [str(k) for k in z["keys"]], np.asarray(z["vectors"], np.float32)
            quarantined = [Quarantined(**q) for q in info["quarantine"]]
            members = {r.image_key for r in plan.records}
            if (
                vectors.shape != (len(keys), dim)
                or not set(keys) <= members
                or len(keys) + len(quarantined) != len(plan.records)
            ):
                raise ValueError("members or vector shape differ from the plan")
            return ShardData(keys, vectors, quarantined)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("shard %s is unusable (%s); it will be rebuilt", npz.name, exc)
            return None


# -- the Ray side ----------------------------------------------------------------------------
class EmbedActor:
    """One Ray Data actor: the image tower held once; decode + embed one batch of paths at a time."""

    def __init__(self, factory: EmbedderFactory, load_factory: LoadFactory = default_load_fn) -> None:
        self.embedder = factory()
        self.load = load_factory(int(getattr(self.embedder, "input_size", 224)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        tensors, ok, reasons = [], np.zeros(len(paths), bool), np.full(len(paths), "", dtype=object)
        for i, path in enumerate(paths):
            try:
                tensors.append(self.load(path))
                ok[i] = True
            except ImageSourceDown:
                raise  # the job fails; the shards already written are kept for the rerun
            except Exception as exc:  # quarantine: one bad file never stops the job
                reasons[i] = quarantine_reason(exc)
        vectors = np.zeros((len(paths), self.embedder.dim), np.float32)
        if tensors:
            vectors[ok] = l2_normalise(np.asarray(self.embedder.encode_images(np.stack(tensors)), np.float32))
        return {"shard": batch["shard"], "pos": batch["pos"], "ok": ok, "reason": reasons, "vector": vectors}


def _ray_rows(
    cfg: RayCorpusConfig, factory: EmbedderFactory, load_factory: LoadFactory, todo: Sequence[ShardPlan]
) -> Iterator[dict[str, np.ndarray]]:
    import ray  # lazily: only the --ray path needs it
    import ray.data

    if not ray.is_initialized():
        ray.init(
            address=cfg.address,
            runtime_env=cfg.runtime_env,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # shards complete in order: the driver buffers at most a few
    ctx.enable_progress_bars = False
    items = [
        {"shard": p.index, "pos": j, "path": r.image_path} for p in todo for j, r in enumerate(p.records)
    ]
    # about one block per model batch (at least two per actor) so every actor gets work from the start
    blocks = min(max(-(-len(items) // cfg.batch_size), 2 * cfg.actors), len(items), 1000)
    source = ray.data.from_items(items, override_num_blocks=blocks)
    embedded = source.map_batches(EmbedActor, fn_constructor_kwargs={"factory": factory, "load_factory": load_factory}, batch_size=cfg.batch_size,
                        compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_cpus=cfg.actor_cpus,
                        batch_format="numpy")  # fmt: skip
    try:
        yield from embedded.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2)
    except Exception as exc:
        down = source_down_in(exc)
        if down is None:
            raise
        raise down from None  # one line for the user, not Ray's remote traceback


_SOURCE_DOWN = re.compile(r"^\S*ImageSourceDown: (.+)$", re.MULTILINE)


def source_down_in(exc: BaseException) -> ImageSourceDown | None:
    """The :class:`ImageSourceDown` an actor raised, if ``exc`` carries one, else None.

    Ray Data re-raises an error from a ``map_batches`` actor as ``RayTaskError(UserCodeException)``
    holding only the remote traceback's text (seen with ray 2.60: neither ``isinstance`` nor the
    ``cause`` chain reaches the original), so the text's ``...ImageSourceDown: <message>`` line is read.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # the chain itself first: a local executor keeps the real exception
        if seen is None:
            break
        if isinstance(seen, ImageSourceDown):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__ or seen.__context__
    match = _SOURCE_DOWN.search(str(exc))
    return ImageSourceDown(match.group(1).strip()) if match else None


def _embed_shards(cfg: RayCorpusConfig, factory: EmbedderFactory, load_factory: LoadFactory, store: ShardStore,
                  plans: Sequence[ShardPlan], dim: int, report: RayBuildReport, progress: ProgressFn | None, cancel: CancelFlag | None,
                  ) -> dict[int, ShardData]:  # fmt: skip
    total = sum(len(p.records) for p in plans)
    done: dict[int, ShardData] = {}
    for p in plans:
        if (data := store.read(p, dim)) is not None:
            done[p.index] = data
    report.shards_total, report.shards_reused = len(plans), len(done)
    todo = [p for p in plans if p.index not in done]
    count = sum(len(p.records) for p in plans if p.index in done)
    if progress:
        progress(count, total)
    if not todo:
        return done
    t0 = time.perf_counter()
    by_index = {p.index: p for p in todo}
    pending: dict[int, dict[int, tuple[bool, str, np.ndarray]]] = {}
    for batch in _ray_rows(cfg, factory, load_factory, todo):
        if _cancelled(cancel):
            raise BuildCancelled(
                f"ray corpus build cancelled after {count}/{total} images; written shards are kept"
            )
        for s, j, ok, reason, vec in zip(
            batch["shard"], batch["pos"], batch["ok"], batch["reason"], batch["vector"], strict=True
        ):
            pending.setdefault(int(s), {})[int(j)] = (bool(ok), str(reason), np.asarray(vec, np.float32))
        for s in [s for s, rows in pending.items() if len(rows) == len(by_index[s].records)]:
            plan, rows = by_index[s], pending.pop(s)
            data = ShardData([], np.zeros((0, dim), np.float32), [])
            vecs = []
            for j, r in enumerate(plan.records):
                ok, reason, vec = rows[j]
                if ok:
                    data.keys.append(r.image_key)
                    vecs.append(vec)
                else:
                    data.quarantined.append(Quarantined(r.study_id, r.image_path, reason))
            data.vectors = np.stack(vecs) if vecs else data.vectors
            store.write(plan, data)
            done[s] = data
            report.shards_written += 1
            report.processed_now += len(plan.records)
            count += len(plan.records)
            if progress:
                progress(count, total)
    report.ray_seconds = time.perf_counter() - t0
    if pending or len(done) != len(plans):
        raise RuntimeError(
            f"the Ray pipeline ended with {len(plans) - len(done)} shard(s) incomplete; rerun to resume"
        )
    return done


class _ShardedStudyIndex(StudyIndex):
    """A :class:`StudyIndex` whose embedding step runs on Ray in shards; metadata and persistence are unchanged."""

    def __init__(self, *args: Any, ray_config: RayCorpusConfig, factory: EmbedderFactory, load_factory: LoadFactory,
                 **kw: Any) -> None:  # fmt: skip
        super().__init__(*args, **kw)
        self.ray_config, self.factory, self.load_factory = ray_config, factory, load_factory
        self.shards = ShardStore(self.store.root / "ray-shards")
        self.ray_report = RayBuildReport(open=None)  # type: ignore[arg-type]
        self.used: list[ShardPlan] = []

    def embed_records(self, records: Sequence[StudyRecord], progress: ProgressFn | None = None,
                      cancel: CancelFlag | None = None) -> Embedded:  # fmt: skip
        dim = self.embedder.dim
        plans = plan_shards(records, self.ray_config.shard_size, self.embedder.version)
        done = _embed_shards(self.ray_config, self.factory, self.load_factory, self.shards, plans, dim, self.ray_report,
                             progress, cancel)  # fmt: skip
        self.used.extend(plans)
        out = Embedded([], np.zeros((0, dim), np.float32))
        vecs = []
        for p in plans:
            data = done[p.index]
            row = {k: i for i, k in enumerate(data.keys)}
            for r in p.records:
                if r.image_key in row:
                    out.kept.append(r)
                    vecs.append(data.vectors[row[r.image_key]])
                else:
                    out.failed.append(r.study_id)
            out.quarantine.extend(asdict(q) for q in data.quarantined)
        if vecs:
            out.vectors = np.stack(vecs)
        return out


def build_with_ray(records: Sequence[StudyRecord], embedder: ImageEmbedder, factory: EmbedderFactory,
                   config: RayCorpusConfig, database: str | None = None, root: str | Path | None = None,
                   index_config: IndexConfig | None = None, progress: ProgressFn | None = None,
                   cancel: CancelFlag | None = None, load_factory: LoadFactory | None = None) -> RayBuildReport:  # fmt: skip
    """Open (warm-load) or build the study index for ``records``, embedding on the Ray cluster.

    ``embedder`` is the driver's copy (its version and dim key the index); ``factory`` builds the
    same model inside each actor, ``load_factory`` (default :func:`default_load_fn`) its image loader.
    The result equals ``StudyIndex(embedder, load_fn=load_factory(size)).open(records)``.
    """
    load_factory = load_factory or default_load_fn
    index = _ShardedStudyIndex(embedder, database, root, index_config, config.batch_size,
                               load_fn=load_factory(int(getattr(embedder, "input_size", 224))),
                               ray_config=config, factory=factory, load_factory=load_factory)  # fmt: skip
    report = index.ray_report
    report.open = index.open(records, progress=progress, cancel=cancel)
    if not config.keep_shards:
        for plan in index.used:
            for p in index.shards.paths(plan):
                p.unlink(missing_ok=True)
        if index.shards.folder.is_dir() and not any(index.shards.folder.iterdir()):
            shutil.rmtree(index.shards.folder, ignore_errors=True)
    return report
