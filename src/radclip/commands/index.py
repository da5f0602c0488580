"""``radclip index``: embed a folder or manifest of radiographs into the study index under RADCLIP_HOME."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HELP = "build (or warm-load) the case-retrieval index from a folder of PNG/DICOM files or a manifest CSV"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default=None,
                        help="index every PNG/DICOM under this folder (default: RADCLIP_CORPUS, else the shared cxr/pool demo corpus)")  # fmt: skip
    parser.add_argument("--manifest", default=None, help="manifest CSV (image_id, path, patient_id, view, report, ...)")
    parser.add_argument("--images-root", default=None, help="folder the manifest's paths are relative to (default: the CSV's folder)")
    parser.add_argument("--limit", type=int, default=None, help="index at most this many studies")
    parser.add_argument("--batch-size", type=int, default=16, help="images embedded per model call")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default RADCLIP_DATABASE_URL or sqlite under RADCLIP_HOME)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="embed on this Ray cluster with Ray Data (e.g. 10.0.0.5:6380 or auto); resumable: rerun to finish")  # fmt: skip
    parser.add_argument("--shard-size", type=int, default=512, help="with --ray: images per resumable shard file")
    parser.add_argument("--ray-actors", type=int, default=2, help="with --ray: embedding actors (one image model each)")
    parser.add_argument("--keep-shards", action="store_true", help="with --ray: keep the shard files after the merge")


def _progress_bar(args: argparse.Namespace, total: int, desc: str) -> tuple[Any, Callable[[int, int], None]]:
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc=desc)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    return bar, progress


def _run_on_ray(args: argparse.Namespace, records: list[Any]) -> int:
    """``--ray``: the same index, embedded by Ray Data actors in resumable shards (radclip.engine.ray_corpus)."""
    from functools import partial

    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.ray_corpus import RayCorpusConfig, build_with_ray
    from radclip.settings import get_settings

    model = get_settings().clip_model
    config = RayCorpusConfig(address=args.ray, shard_size=args.shard_size, batch_size=args.batch_size,
                             actors=args.ray_actors, keep_shards=args.keep_shards)  # fmt: skip
    bar, progress = _progress_bar(args, len(records), "indexing on ray")
    report = build_with_ray(records, default_image_embedder(model), partial(default_image_embedder, model), config,
                            database=args.database, progress=progress)  # fmt: skip
    if bar is not None:
        bar.close()
    print(json.dumps(report.summary()))
    return 0


def run(args: argparse.Namespace) -> int:
    from radclip.engine.corpus import corpus_records, records_from_manifest
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.study_index import StudyIndex
    from radclip.settings import get_settings

    try:
        if args.manifest:
            csv = Path(args.manifest)
            records = records_from_manifest(csv, Path(args.images_root) if args.images_root else csv.parent)
        else:
            records = corpus_records(Path(args.folder) if args.folder else get_settings().resolved_corpus)
        records = records[: args.limit] if args.limit else records
        if not records:
            raise ValueError("no images found to index (looked for .png/.dcm/.jpg files)")
        if getattr(args, "ray", None):
            return _run_on_ray(args, records)
        index = StudyIndex(default_image_embedder(), args.database, batch_size=args.batch_size)
    except (ValueError, RuntimeError, OSError) as exc:  # FileNotFoundError: neither a folder nor a CSV
        print(f"radclip index: {exc}", file=sys.stderr)
        return 1
    bar, progress = _progress_bar(args, len(records), "indexing")
    report = index.open(records, progress=progress)
    if bar is not None:
        bar.close()
    print(json.dumps({"key": report.key.slug, "loaded": report.loaded, "reason": report.reason, "embedded": report.embedded,
                      "failed": len(report.failed), "live": report.live, "kind": report.kind,
                      "seconds": round(report.seconds, 2), "root": str(index.store.root)}))  # fmt: skip
    return 0
