"""``radclip eval labeller``: the frozen report labeller against IU MeSH (val/test) and hand-labelled covid notes."""

from __future__ import annotations

import argparse

HELP = (
    "held-out precision/recall/F1/kappa of the report labeller (IU MeSH val+test, hand-labelled covid notes)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reports", default="", help="IU reports CSV (default: data_root/text/iu_reports.csv)"
    )
    parser.add_argument(
        "--manifest",
        default="",
        help="manifest CSV with the covid notes (default: data_root/cxr/manifest.csv)",
    )
    parser.add_argument("--out", required=True, help="JSON report path")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from radclip.eval.labeller_eval import evaluate_labeller
    from radclip.settings import get_settings

    root = Path(get_settings().data_root)
    reports = Path(args.reports) if args.reports else root / "text" / "iu_reports.csv"
    manifest = Path(args.manifest) if args.manifest else root / "cxr" / "manifest.csv"
    for what, path in (("--reports", reports), ("--manifest", manifest)):
        if not path.is_file():
            raise SystemExit(
                f"{path} not found; pass {what} or set RADCLIP_DATA_ROOT to the shared data folder"
            )
    report = evaluate_labeller(reports, manifest)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    brief = {
        name: {
            k: v["per_label"][name]["f1"]
            for k, v in (("test", report["mesh"]["test"]), ("notes", report["covid_notes"]))
        }
        for name in ("Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Consolidation")
    }
    print(json.dumps({"rules_sha256": report["rules_sha256"], "f1": brief}))
    return 0
