"""``radclip train triage``: supervised training of a triage network on a manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train a triage network (masked BCE over the 14 NIH labels) and write safetensors + model card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="mobilenetv2_triage", help="registered architecture (default: %(default)s)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for <name>.safetensors, <name>.card.json, train_log.json")
    parser.add_argument("--name", default="radclip-triage", help="card name / file stem (default: %(default)s)")
    parser.add_argument("--version", default="0.1.0", help="card version")
    parser.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: $RADCLIP_DATA_ROOT/cxr/manifest.csv)")
    parser.add_argument("--images-root", type=Path, default=None, help="folder the manifest paths are relative to (default: the manifest's folder)")
    parser.add_argument("--sources", default="nih", help="comma-separated sources to use, or 'all' (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the head")
    parser.add_argument("--backbone-lr-mult", type=float, default=1.0, help="backbone LR = lr * this")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--pos-weight", default=None, help="positive-class weight: 'auto' (neg/pos per label, max 10) or a number")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224, help="input size S of the contract tensor")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--augment", action="store_true", help="small random affine + brightness/contrast")
    parser.add_argument("--hflip", action="store_true", help="random horizontal flips (with --augment)")
    parser.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights (0 = off, e.g. 0.98)")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="dropout before the classifier")
    parser.add_argument("--no-pretrained", action="store_true", help="random initialisation instead of ImageNet")
    parser.add_argument("--low-res-weight", type=float, default=1.0, help="loss weight of the 64 px NIH copies (orig_width <= 64): 1 keeps, 0 drops, between down-weights")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster on CPU; same numbers up to float rounding)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def run(args: argparse.Namespace) -> int:
    from radclip.train.triage_trainer import TriageTrainConfig, train_triage

    sources = None if args.sources in ("all", "") else tuple(s.strip() for s in args.sources.split(","))
    cfg = TriageTrainConfig(
        out_dir=args.out, arch=args.arch, name=args.name, version=args.version, manifest=args.manifest, images_root=args.images_root,
        sources=sources, size=args.size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, backbone_lr_mult=args.backbone_lr_mult,
        weight_decay=args.weight_decay, pos_weight=args.pos_weight, max_steps=args.max_steps, seed=args.seed, num_workers=args.num_workers,
        augment=args.augment, hflip=args.hflip, ema_decay=args.ema, pretrained=not args.no_pretrained, drop_rate=args.drop_rate,
        progress=not args.no_progress, low_res_weight=args.low_res_weight, channels_last=args.channels_last,
    )
    log = train_triage(cfg)
    summary = {"best_epoch": log.get("best_epoch"), "train_seconds": log["train_seconds"], "epochs": log["epochs"], "out": str(args.out)}
    print(json.dumps(summary, indent=2))
    return 0
