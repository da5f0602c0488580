"""``radclip train clip``: train the image-text model (see :mod:`radclip.train.clip_trainer`)."""

from __future__ import annotations

import argparse

HELP = "train the image-text (MedCLIP-style) model on the manifest, IU reports and label captions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out-dir", required=True, help="folder for checkpoints, log.jsonl and train_state.json"
    )
    parser.add_argument("--manifest", default="", help="manifest CSV (default: <data_root>/cxr/manifest.csv)")
    parser.add_argument(
        "--images-root",
        default="",
        help="folder the manifest paths are relative to (default: the manifest's folder)",
    )
    parser.add_argument(
        "--iu-reports",
        default="",
        help="IU reports CSV (default: <data_root>/text/iu_reports.csv; 'none' to skip)",
    )
    parser.add_argument(
        "--model",
        default="mini",
        choices=["mini", "tiny"],
        help="mini = MobileNetV2 + frozen MiniLM; tiny = test-size towers",
    )
    parser.add_argument("--vision-init", default="imagenet", help="none | imagenet | triage | a weight file")
    parser.add_argument(
        "--train-image-trunk",
        action="store_true",
        help="fine-tune the image trunk too (default: heads only over cached features)",
    )
    parser.add_argument(
        "--image-size", type=int, default=224, help="contract size of the image tower (mini model)"
    )
    parser.add_argument(
        "--head", default="mlp", choices=["mlp", "linear"], help="projection heads (mini model)"
    )
    parser.add_argument("--head-dropout", type=float, default=0.0, help="dropout inside mlp heads")
    parser.add_argument(
        "--trainable-blocks",
        type=int,
        default=0,
        help="fine-tune the last N image-trunk blocks over cached earlier maps",
    )
    parser.add_argument(
        "--sources",
        default="nih,iu,covid",
        help="comma-separated training sources from nih, iu, covid, kermany (opt-in: then Kermany is not zero-shot)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="0 = images // batch size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--extra-texts", type=int, default=64, help="IU reports added to each batch's texts")
    parser.add_argument("--captions-per-image", type=int, default=4)
    parser.add_argument(
        "--negation-captions",
        type=int,
        default=0,
        help="extra negation-aware captions per NIH image, naming an absent finding ('... there is no X.')",
    )
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--label-temperature", type=float, default=0.1)
    parser.add_argument("--pair-weight", type=float, default=1.0)
    parser.add_argument(
        "--gradcache-chunk", type=int, default=0, help="> 0: gradient caching with chunks of this many rows"
    )
    parser.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from --out-dir's last checkpoint")
    parser.add_argument(
        "--feature-cache", default="", help="folder persisting frozen-trunk features between runs"
    )
    parser.add_argument(
        "--text-layers",
        default="",
        help="fine-tuned top MiniLM layers (text_layers.safetensors from python -m radclip.train.text_negation); shipped in the weights",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from radclip.train.clip_trainer import ClipTrainConfig, train_clip

    cfg = ClipTrainConfig(
        out_dir=args.out_dir,
        manifest=args.manifest,
        images_root=args.images_root,
        iu_reports=args.iu_reports,
        model=args.model,
        vision_init=args.vision_init,
        freeze_image=not args.train_image_trunk,
        trainable_blocks=args.trainable_blocks,
        image_size=args.image_size,
        head=args.head,
        head_dropout=args.head_dropout,
        sources=tuple(s.strip() for s in args.sources.split(",") if s.strip()),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        extra_texts=args.extra_texts,
        captions_per_image=args.captions_per_image,
        negation_captions=args.negation_captions,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        label_temperature=args.label_temperature,
        pair_weight=args.pair_weight,
        gradcache_chunk=args.gradcache_chunk,
        amp=not args.no_amp,
        device=args.device,
        seed=args.seed,
        resume=args.resume,
        progress=not args.no_progress,
        feature_cache=args.feature_cache,
        text_layers=args.text_layers,
    )
    state = train_clip(cfg)
    last = state["history"][-1] if state["history"] else {}
    print(
        json.dumps(
            {"best_epoch": state.get("best_epoch"), "best_score": state.get("best_score"), "last": last},
            indent=1,
        )
    )
    return 0
