"""``radclip export onnx``: export the triage network, both image–text towers and the fused /screen graph, with parity checks."""

from __future__ import annotations

import argparse
import sys

HELP = "export models to ONNX (and TorchScript) with a parity check against PyTorch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=["onnx"], help="export format (onnx; --torchscript adds TorchScript traces)")
    parser.add_argument("--out", default=None, help="output folder (default RADCLIP_EXPORT_DIR or $RADCLIP_HOME/export)")
    parser.add_argument("--triage", default=None, help="triage model name or path (default RADCLIP_TRIAGE_MODEL)")
    parser.add_argument("--clip", default=None, help="image-text model name or path (default RADCLIP_CLIP_MODEL)")
    parser.add_argument("--only", choices=["triage", "clip"], default=None, help="export one of the two")
    parser.add_argument("--if-missing", action="store_true", help="do nothing for models whose verified export already exists")
    parser.add_argument("--torchscript", action="store_true", help="also write TorchScript traces (.pt) of the triage and image graphs")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--int8-image", action="store_true",
                        help="also write a static-int8 image tower (calibrated on the train split; served with RADCLIP_INT8_IMAGE=true)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from radclip.export.parity import export_and_check, export_and_check_int8_image, export_and_check_screen
    from radclip.settings import get_settings

    s = get_settings()
    out = Path(args.out) if args.out else s.resolved_export_dir
    wanted = {"triage": args.triage or s.triage_model, "clip": args.clip or s.clip_model}
    if args.only:
        wanted = {args.only: wanted[args.only]}
    try:
        for role, name in wanted.items():
            for line in export_and_check(role, name, out, if_missing=args.if_missing, torchscript=args.torchscript, opset=args.opset):
                print(line)
        if not args.only:  # both models: the fused /screen graph over their shared trunk blocks, if any
            for line in export_and_check_screen(wanted["triage"], wanted["clip"], out, if_missing=args.if_missing, opset=args.opset):
                print(line)
        if args.int8_image and "clip" in wanted:
            for line in export_and_check_int8_image(wanted["clip"], out, if_missing=args.if_missing, opset=args.opset):
                print(line)
    except Exception as exc:  # a readable line, not a traceback: export failures are user-facing
        print(f"radclip export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
