"""``radclip index``: embed a folder or manifest of radiographs into the study index under RADCLIP_HOME."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
        index = StudyIndex(default_image_embedder(), args.database, batch_size=args.batch_size)
    except (ValueError, RuntimeError, OSError) as exc:  # FileNotFoundError: neither a folder nor a CSV
        print(f"radclip index: {exc}", file=sys.stderr)
        return 1
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), unit="img", desc="indexing")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()

    report = index.open(records, progress=progress)
    if bar is not None:
        bar.close()
    print(json.dumps({"key": report.key.slug, "loaded": report.loaded, "reason": report.reason, "embedded": report.embedded,
                      "failed": len(report.failed), "live": report.live, "kind": report.kind,
                      "seconds": round(report.seconds, 2), "root": str(index.store.root)}))  # fmt: skip
    return 0
