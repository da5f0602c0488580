"""``radclip index``: embed a folder, a manifest or a DICOMweb server's studies into the study index under RADCLIP_HOME."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HELP = "build (or warm-load) the case-retrieval index from a folder of PNG/DICOM files, a manifest CSV or a DICOMweb server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default=None,
                        help="index every PNG/DICOM under this folder, or every instance on a DICOMweb server "
                             "(dicomweb+http://HOST:PORT/dicom-web) (default: RADCLIP_CORPUS, else the shared cxr/pool demo corpus)")  # fmt: skip
    parser.add_argument("--modalities", default="CR,DX",
                        help="DICOMweb source: list only instances of these modalities (comma-separated; 'all': every instance)")  # fmt: skip
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


def _run_on_ray(args: argparse.Namespace, records: list[Any], load_factory: Any = None) -> int:
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
                            database=args.database, progress=progress, load_factory=load_factory)  # fmt: skip
    if bar is not None:
        bar.close()
    print(json.dumps(report.summary()))
    return 0


def _list_records(args: argparse.Namespace) -> tuple[list[Any], Any]:
    """The records to index and their loader factory (None: files, read by the engine's default loader)."""
    from radclip.engine.corpus import corpus_records, records_from_manifest
    from radclip.settings import get_settings

    if args.manifest:
        csv = Path(args.manifest)
        return records_from_manifest(csv, Path(args.images_root) if args.images_root else csv.parent), None
    source = args.folder
    if source and "://" in source:
        from radclip.integrations.dicomweb_corpus import (
            dicomweb_load_fn,
            is_dicomweb_source,
            records_from_dicomweb,
        )

        if not is_dicomweb_source(source):
            raise ValueError(f"{source!r} is a URL; to index a DICOMweb server write dicomweb+{source}")
        wanted = None if args.modalities.strip().lower() == "all" else tuple(m.strip().upper() for m in args.modalities.split(",") if m.strip())
        return records_from_dicomweb(source, modalities=wanted), dicomweb_load_fn
    return corpus_records(Path(source) if source else get_settings().resolved_corpus), None


def run(args: argparse.Namespace) -> int:
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.study_index import ImageSourceDown, StudyIndex

    try:
        records, load_factory = _list_records(args)
        records = records[: args.limit] if args.limit else records
        if not records:
            raise ValueError("no images found to index (no .png/.dcm/.jpg files, or no instances on the server)")
        if getattr(args, "ray", None):
            return _run_on_ray(args, records, load_factory)
        embedder = default_image_embedder()
        load_fn = load_factory(int(getattr(embedder, "input_size", 224))) if load_factory else None
        index = StudyIndex(embedder, args.database, batch_size=args.batch_size, load_fn=load_fn)
    # FileNotFoundError: neither a folder nor a CSV; RuntimeError: the DICOMweb server is down or refused
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"radclip index: {exc}", file=sys.stderr)
        return 1
    bar, progress = _progress_bar(args, len(records), "indexing")
    try:
        report = index.open(records, progress=progress)
    except ImageSourceDown as exc:  # the image server went away mid-build: one line, rerun to resume
        print(f"radclip index: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps({"key": report.key.slug, "loaded": report.loaded, "reason": report.reason, "embedded": report.embedded,
                      "failed": len(report.failed), "quarantine": report.quarantine, "live": report.live,
                      "kind": report.kind, "seconds": round(report.seconds, 2), "root": str(index.store.root)}))  # fmt: skip
    return 0
