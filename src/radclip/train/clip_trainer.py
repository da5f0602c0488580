"""Training loop of the image-text model (``radclip train clip``).

One step: sample images (one own text each) plus extra text-only reports
(:mod:`radclip.train.clip_data`), embed them (frozen trunks through the cached
:class:`~radclip.train.clip_data.FeatureBank`), and minimise

    semantic-matching loss (all images x all texts)  +  pair_weight * InfoNCE (genuine report pairs)

with AdamW, linear warmup + cosine decay, AMP on CUDA only, optional gradient caching
(``gradcache_chunk``) and DDP (``torchrun``; embeddings all-gathered with gradient).
Every step logs the loss terms, contrastive accuracy and temperature (``log.jsonl``); every
epoch validates retrieval R@1/5/10 both ways and matched cosine on the validation report
pairs, and zero-shot mean AUC on the validation NIH rows. Checkpoints (``last.safetensors``
+ ``last.optim.safetensors`` + ``train_state.json``) make runs resumable; ``best.safetensors``
holds the best validation score (zero-shot mean AUC + mean R@5).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radclip.train.clip_data import SOURCES, Batch, ClipSources, FeatureBank, build_sources, sample_batch
from radclip.train.distributed import (
    DistInfo,
    barrier,
    broadcast_model,
    cleanup_distributed,
    gather_features,
    gather_rows,
    init_distributed,
    replica_divergence,
)

log = logging.getLogger(__name__)


@dataclass
class ClipTrainConfig:
    """One training run (saved into ``train_state.json`` and the model card)."""

    out_dir: str  # checkpoints, log.jsonl, train_state.json
    manifest: str = ""  # manifest CSV ("" = <data_root>/cxr/manifest.csv)
    images_root: str = ""  # folder the manifest paths are relative to ("" = the manifest's folder)
    iu_reports: str = ""  # IU reports CSV ("" = <data_root>/text/iu_reports.csv; "none" = skip)
    model: str = "mini"  # "mini" (MobileNetV2 + frozen MiniLM) | "tiny" (tests)
    vision_init: str = "imagenet"  # "none" | "imagenet" | "triage" (shipped triage backbone) | a file
    freeze_image: bool = True  # train the heads only over cached image-trunk features (CPU budget)
    head: str = "mlp"  # projection heads: "linear" | "mlp"
    head_dropout: float = 0.0  # dropout inside mlp heads (regularises heads trained on few images)
    image_size: int = 224  # contract size S of the image tower (NIH copies are mostly 64x64 upsampled)
    trainable_blocks: int = 0  # > 0: fine-tune the last N trunk blocks over cached earlier maps
    sources: tuple[str, ...] = SOURCES  # training sources: nih, iu, covid
    epochs: int = 10  # validation + checkpoint after each
    steps_per_epoch: int = 0  # 0 = images // batch_size
    batch_size: int = 64  # images per step (each with one own text)
    extra_texts: int = 64  # IU reports added to each step's texts
    captions_per_image: int = 4  # label captions per NIH image
    negation_captions: int = 0  # extra NIH captions naming an absent finding ("... there is no X.")
    lr: float = 5e-5  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 50  # linear warmup, then cosine decay
    label_temperature: float = 0.1  # softmax temperature of the label-similarity targets
    pair_weight: float = 1.0  # weight of paired InfoNCE on genuine report pairs
    gradcache_chunk: int = 0  # > 0: gradient caching with chunks of this many rows
    amp: bool = True  # bfloat16 autocast, used on CUDA only
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    seed: int = 0  # sampling and initialisation
    resume: bool = False  # continue from out_dir's last checkpoint
    progress: bool = True  # tqdm bar
    feature_cache: str = ""  # folder persisting frozen-trunk features between runs ("" = memory only)
    text_layers: str = ""  # tuned top MiniLM layers (train.text_negation): shipped, fixed here
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into the train state


def build_model(cfg: ClipTrainConfig) -> Any:
    from radclip.models.clip import ClipConfig, MedClip, mini_config, tiny_config

    base = tiny_config() if cfg.model == "tiny" else mini_config() if cfg.model == "mini" else None
    if base is None:
        raise ValueError(f"unknown model {cfg.model!r}; use 'mini' or 'tiny'")
    init = cfg.vision_init
    if init == "triage":
        from radclip.models.weights import SHIPPED_DIR

        init = str(SHIPPED_DIR / "radclip-mobilenetv2-nih.safetensors")
    base.vision.init = "none" if cfg.model == "tiny" and init == "imagenet" else init
    base.vision.frozen = cfg.freeze_image and cfg.trainable_blocks == 0
    base.vision.trainable_blocks = cfg.trainable_blocks
    if cfg.model != "tiny":
        base.vision.image_size = cfg.image_size
        base.head, base.head_dropout = cfg.head, cfg.head_dropout
    if cfg.text_layers:
        from radclip.models.text_encoder import tuned_layers_in

        base.text.tuned_layers = tuned_layers_in(cfg.text_layers)
    model = MedClip(ClipConfig.from_dict(base.to_dict()))
    if cfg.text_layers:
        model.text.trunk.load_tuned(cfg.text_layers)
    return model


def _defaults(cfg: ClipTrainConfig) -> tuple[str, str, str | None]:
    manifest, root, iu = cfg.manifest, cfg.images_root, cfg.iu_reports
    if not manifest or not iu:
        from radclip.settings import get_settings

        data = Path(get_settings().data_root)
        manifest = manifest or str(data / "cxr" / "manifest.csv")
        iu = iu or str(data / "text" / "iu_reports.csv")
    root = root or str(Path(manifest).parent)
    return manifest, root, None if iu == "none" else iu


def step_loss(
    model: Any, bank: FeatureBank, src: ClipSources, batch: Batch, cfg: ClipTrainConfig, info: DistInfo
) -> dict[str, torch.Tensor]:
    """Embed one batch and compute the named loss terms (``loss`` = their weighted sum)."""
    from radclip.train.losses import clip_loss, contrastive_accuracy, semantic_matching_loss

    texts = [src.texts[i] for i in batch.texts]
    # The loss sees every rank's embeddings, so it needs every rank's label vectors, in the same order.
    # (On the model's device: NCCL gathers CUDA tensors only.)
    device = model.logit_scale.device
    img_lab = gather_rows(torch.from_numpy(src.image_labels[batch.images]).to(device), info)
    txt_lab = gather_rows(torch.from_numpy(src.text_labels[batch.texts]).to(device), info)
    paired = torch.from_numpy(batch.paired)
    n = len(batch.images)

    def loss_fn(img: torch.Tensor, txt: torch.Tensor) -> dict[str, torch.Tensor]:
        g_img, g_txt = gather_features(img, txt, info)
        scale = model.scale()
        terms = semantic_matching_loss(g_img, g_txt, scale, img_lab, txt_lab, cfg.label_temperature)
        loss = terms.pop("semantic")
        out = {
            "semantic": loss.detach(),
            "acc": torch.tensor(contrastive_accuracy(img.detach(), txt[:n].detach())),
        }
        if cfg.pair_weight > 0 and int(paired.sum()) >= 2:
            sel = paired.nonzero().squeeze(1).to(img.device)
            pair = clip_loss(img[sel], txt[sel], scale)["contrastive"]
            loss = loss + cfg.pair_weight * pair
            out["paired"] = pair.detach()
            out["pair_acc"] = torch.tensor(contrastive_accuracy(img[sel].detach(), txt[sel].detach()))
        out["loss"] = loss
        out["temperature"] = (1.0 / scale).detach()
        return out

    def enc_img(a: int, b: int) -> torch.Tensor:
        return bank.image_embed("train", src.images, batch.images[a:b])

    def enc_txt(a: int, b: int) -> torch.Tensor:
        return bank.text_embed(texts[a:b])

    if cfg.gradcache_chunk > 0:
        from radclip.train.gradcache import gradcache_backward

        return gradcache_backward(enc_img, enc_txt, n, len(texts), loss_fn, cfg.gradcache_chunk)
    from radclip.train.gradcache import full_backward

    return full_backward(enc_img, enc_txt, n, len(texts), loss_fn)


def _device(cfg: ClipTrainConfig, info: DistInfo) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def train_clip(cfg: ClipTrainConfig) -> dict[str, Any]:
    """Run the whole training; returns the final train state (history included).

    Under ``torchrun`` every rank runs this: rank 0's initial weights are broadcast, each rank draws
    its own batch (seed + rank), embeddings are gathered with gradient and gradients averaged, and
    only rank 0 writes the feature cache, the step log and the checkpoints.
    """
    info = init_distributed()
    try:
        return _train(cfg, info)
    finally:
        cleanup_distributed(info)


def _train(cfg: ClipTrainConfig, info: DistInfo) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from radclip.train.seed import seed_everything

    seed_everything(cfg.seed + info.rank, deterministic=False)
    manifest, root, iu = _defaults(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg)
    device = _device(cfg, info)
    model.to(device)
    broadcast_model(model, info)
    size = model.preprocessing.input_size
    n_caps, n_neg = cfg.captions_per_image, cfg.negation_captions
    src = build_sources(manifest, root, iu, "train", cfg.sources, size, n_caps, cfg.seed, n_neg)
    val = ValidationSet.build(manifest, root, size)
    bank = FeatureBank(model, cache_dir=cfg.feature_cache or None, read_only=not info.is_main)
    if not info.is_main:
        barrier(info)  # wait for rank 0 to fill the on-disk feature cache, then read it
    _warm_cache(bank, src, val, persist=info.is_main)
    if info.is_main:
        barrier(info)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.steps_per_epoch or max(1, len(src.images) // cfg.batch_size)
    total = steps * cfg.epochs
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_score": None, "history": [], "config": asdict(cfg)}
    if _resume_everywhere(cfg.resume and (out / "train_state.json").is_file(), out, info):
        state = load_checkpoint(out, model, opt)
    rng = np.random.default_rng(cfg.seed + 1000 * state["step"] + info.rank)
    amp = cfg.amp and device.type == "cuda"
    bar = tqdm(
        total=total, initial=state["step"], disable=not (cfg.progress and info.is_main), desc="train clip"
    )
    t0 = time.time()
    with (out / "log.jsonl").open("a") if info.is_main else open(os.devnull, "w") as logf:  # noqa: SIM115
        for epoch in range(state["epoch"], cfg.epochs):
            model.train()
            for _ in range(steps):
                row = _train_step(model, opt, bank, src, cfg, info, state, rng, total, amp, params)
                logf.write(json.dumps(row | {"epoch": epoch}) + "\n")
                logf.flush()
                bar.update(1)
                bar.set_postfix(loss=row["loss"], T=row["temperature"])
            metrics = validate(model, bank, val)
            metrics.update(
                {"epoch": epoch + 1, "step": state["step"], "elapsed_s": round(time.time() - t0, 1)}
            )
            state["history"].append(metrics)
            state["epoch"] = epoch + 1
            log.info("epoch %d: %s", epoch + 1, metrics)
            if info.is_main:
                score = metrics["score"]
                if state["best_score"] is None or score > state["best_score"]:
                    state["best_score"] = score
                    state["best_epoch"] = epoch + 1
                    save_checkpoint(out, model, None, state, stem="best")
            if info.world_size > 1:  # replicas must stay identical; recorded so a drift is visible
                state["ddp"] = {
                    "world_size": info.world_size,
                    "replica_max_abs_diff": replica_divergence(model, info),
                }
            if info.is_main:
                save_checkpoint(out, model, opt, state, stem="last")
    bar.close()
    if info.is_main and (out / "best.safetensors").is_file():
        from radclip.train.clip_card import write_card

        write_card(out, cfg, state, model, manifest, cfg.extra.get("version", "0.4.0-candidate"))
    return state


def _train_step(
    model: Any,
    opt: torch.optim.Optimizer,
    bank: FeatureBank,
    src: ClipSources,
    cfg: ClipTrainConfig,
    info: DistInfo,
    state: dict[str, Any],
    rng: np.random.Generator,
    total: int,
    amp: bool,
    params: list[torch.nn.Parameter],
) -> dict[str, Any]:
    """One optimiser step (schedule, loss, gradient averaging, temperature clamp); returns the log row."""
    from radclip.train.schedule import warmup_cosine

    for g in opt.param_groups:
        g["lr"] = cfg.lr * warmup_cosine(state["step"], total, cfg.warmup_steps)
    opt.zero_grad(set_to_none=True)
    batch = sample_batch(src, cfg.batch_size, cfg.extra_texts, rng)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        terms = step_loss(model, bank, src, batch, cfg, info)
    _all_reduce_grads(params, info)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, float(np.log(100.0)))  # exp(logit_scale) <= 100, as CLIP
    state["step"] += 1
    row = {k: round(float(v), 5) for k, v in terms.items()}
    return row | {"step": state["step"], "lr": opt.param_groups[0]["lr"]}


def _resume_everywhere(resume_here: bool, out: Path, info: DistInfo) -> bool:
    """Rank 0 decides whether to resume; every rank must then find the checkpoint (a shared --out-dir)."""
    if info.world_size <= 1:
        return resume_here
    import torch.distributed as dist

    flag = torch.tensor([int(resume_here)], device=_device_of_rank(info))
    dist.broadcast(flag, src=0)
    if bool(flag.item()) and not (out / "train_state.json").is_file():
        raise RuntimeError(f"rank {info.rank}: rank 0 resumes from {out} but this rank cannot see it; "
                           "--out-dir must be on a filesystem every rank shares")  # fmt: skip
    return bool(flag.item())


def _device_of_rank(info: DistInfo) -> torch.device:
    return torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def _warm_cache(bank: FeatureBank, src: ClipSources, val: ValidationSet, persist: bool = True) -> None:
    """Run the frozen trunks over every training/validation input once (and persist them when ``persist``)."""
    if bank.image_frozen:
        bank.image_features("train", src.images, np.arange(len(src.images)))
        for key, images in (("val_pairs", val.pair_images), ("val_nih", val.nih_images)):
            if len(images):
                bank.image_features(key, images, np.arange(len(images)))
    if bank.text_frozen:
        bank.text_features(src.texts + val.texts)
        if persist:
            bank.save_texts()


def _all_reduce_grads(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average gradients over ranks (the gathered loss gives each rank world_size x its share)."""
    if info.world_size <= 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= info.world_size


# --------------------------------------------------------------------------- validation
@dataclass
class ValidationSet:
    """Validation report pairs (retrieval) and NIH rows (zero-shot), decoded once."""

    pair_images: np.ndarray  # (N, 1, S, S) images that have a report
    pair_rows: list[int]  # image -> row in texts
    texts: list[str]  # distinct reports
    nih_images: np.ndarray  # (M, 1, S, S)
    nih_labels: np.ndarray  # (M, 14) NaN unknown

    @classmethod
    def build(cls, manifest: str, root: str, size: int, split: str = "val") -> ValidationSet:
        from radclip.eval.retrieval import dedupe_texts
        from radclip.io.datasets import ManifestDataset, PairDataset
        from radclip.io.manifest import ManifestError

        empty = np.zeros((0, 1, size, size), np.float32)
        try:
            pairs = PairDataset(manifest, root, split=split, size=size)
            texts, rows = dedupe_texts([str(r) for r in pairs.frame["report"]])
            pair_images = np.stack([pairs.image(i) for i in range(len(pairs))])
        except ManifestError:
            texts, rows, pair_images = [], [], empty
        try:
            nih = ManifestDataset(manifest, root, split=split, sources=["nih"], size=size)
            nih_images, nih_labels = np.stack([nih.image(i) for i in range(len(nih))]), nih.labels_matrix()
        except ManifestError:
            nih_images, nih_labels = empty, np.zeros((0, 14), np.float32)
        return cls(pair_images, rows, texts, nih_images, nih_labels)


def validate(model: Any, bank: FeatureBank, val: ValidationSet) -> dict[str, Any]:
    """Retrieval R@1/5/10 both ways + matched cosine on report pairs; zero-shot mean AUC on NIH rows."""
    from radclip.eval.retrieval import matched_cosine, recall_at_k
    from radclip.eval.zeroshot import class_embeddings, mean_measurable_auc, zeroshot_scores
    from radclip.io.labels import NIH_LABELS

    model.eval()
    out: dict[str, Any] = {}
    with torch.no_grad():
        if len(val.texts) >= 2:
            img = (
                bank.image_embed("val_pairs", val.pair_images, np.arange(len(val.pair_images)))
                .float()
                .cpu()
                .numpy()
            )
            txt = bank.text_embed(val.texts).float().cpu().numpy()
            out.update(recall_at_k(img, txt, val.pair_rows))
            out["matched_cosine"] = matched_cosine(img, txt, val.pair_rows)
        if len(val.nih_images):
            img = (
                bank.image_embed("val_nih", val.nih_images, np.arange(len(val.nih_images)))
                .float()
                .cpu()
                .numpy()
            )
            pos, neg = class_embeddings(lambda t: bank.text_embed(t).float().cpu().numpy(), list(NIH_LABELS))
            out["zeroshot_mean_auc"] = mean_measurable_auc(val.nih_labels, zeroshot_scores(img, pos, neg))
    r5 = [out[k] for k in ("i2t_R@5", "t2i_R@5") if k in out]
    out["score"] = float((out.get("zeroshot_mean_auc") or 0.0) + (np.mean(r5) if r5 else 0.0))
    model.train()
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    out: Path, model: Any, opt: torch.optim.Optimizer | None, state: dict[str, Any], stem: str
) -> None:
    """``<stem>.safetensors`` (model), ``<stem>.optim.safetensors`` (AdamW moments) and ``train_state.json``."""
    from radclip.models.weights import save_state_dict

    save_state_dict(model.state_dict(), out / f"{stem}.safetensors")
    if opt is None:
        return
    sd = opt.state_dict()
    tensors = {
        f"{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if isinstance(v, torch.Tensor)
    }
    save_state_dict(tensors, out / f"{stem}.optim.safetensors")
    state = dict(
        state, param_groups=[{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    )
    (out / "train_state.json").write_text(json.dumps(state, indent=1, default=str) + "\n")


def load_checkpoint(out: Path, model: Any, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimiser from ``last.*``; returns the saved train state."""
    from radclip.models.weights import load_state_dict

    state = json.loads((out / "train_state.json").read_text())
    model.load_state_dict(load_state_dict(out / "last.safetensors"))
    flat = load_state_dict(out / "last.optim.safetensors")
    per: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        idx, name = key.split(".", 1)
        per.setdefault(int(idx), {})[name] = value
    sd = opt.state_dict()
    sd["state"] = per
    for group, saved in zip(sd["param_groups"], state.pop("param_groups", []), strict=False):
        group.update({k: v for k, v in saved.items() if k != "params"})
    opt.load_state_dict(sd)
    return state


def main(argv: list[str] | None = None) -> int:
    """``radclip train clip`` without the top-level CLI (tests call this)."""
    import argparse

    from radclip.commands.train_clip import add_arguments, run

    parser = argparse.ArgumentParser(prog="radclip train clip")
    add_arguments(parser)
    return run(parser.parse_args(argv))
