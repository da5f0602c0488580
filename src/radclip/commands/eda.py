"""``radclip eda``: charts and tables describing a manifest (and the IU report corpus)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write exploratory data analysis charts (PNG), eda.json and index.html for a manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: $RADCLIP_DATA_ROOT/cxr/manifest.csv)")
    parser.add_argument("--images-root", type=Path, default=None, help="folder the manifest paths are relative to (default: $RADCLIP_DATA_ROOT/cxr)")
    parser.add_argument("--reports", type=Path, default=None, help="IU report CSV for the length histogram (default: $RADCLIP_DATA_ROOT/text/iu_reports.csv if present)")
    parser.add_argument("--no-reports", action="store_true", help="leave the IU report corpus out")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the sample images")
    parser.add_argument("--sample-licence", default=None, metavar="REGEX",
                        help="show only images whose manifest 'license' matches REGEX in the sample grid, e.g. '^(CC0|CC BY(?!-N))' for a published report")


def run(args: argparse.Namespace) -> int:
    from radclip.eval.eda import build_eda_report
    from radclip.settings import get_settings

    data_root = get_settings().data_root
    manifest = args.manifest or data_root / "cxr" / "manifest.csv"
    images_root = args.images_root or data_root / "cxr"
    reports = None
    if not args.no_reports:
        reports = args.reports or data_root / "text" / "iu_reports.csv"
        if args.reports is None and not reports.is_file():
            reports = None
    try:
        index = build_eda_report(manifest, images_root, args.out, reports_csv=reports, seed=args.seed, sample_licence=args.sample_licence)
    except (ValueError, FileNotFoundError) as exc:  # ManifestError is a ValueError; messages say how to fix
        print(f"radclip eda: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0
