"""Teach the top MiniLM layers negation, from IU report sentences and the labeller's states (text only).

MiniLM (frozen) puts "pleural effusion" and "no pleural effusion" at cosine ~0.9. This fine-tunes its top
``n_layers`` encoder layers on IU **train** report sentences, each labelled by the rule-based labeller
(:func:`radclip.io.labeller.label_report`: per NIH finding positive / negative / uncertain / not mentioned):

* ``state``: a linear probe on the mean-pooled sentence embedding predicts each mentioned finding's state
  (3-way cross-entropy), so affirmed and negated mentions must be linearly separable;
* ``separate``: for two sentences in a batch that mention the same finding with opposite states (positive vs
  negative), ``relu(cos - margin)``: they must not stay near-identical;
* ``keep``: ``1 - cos(new, original)`` for every sentence, so the rest of the embedding space (what the
  projection heads and retrieval use) moves as little as possible.

The layers below are frozen: their output is computed once and cached, so an epoch costs only the top layers.
The epoch with the lowest **IU val** loss is kept; the pair set of :mod:`radclip.eval.negation_pairs` is
measured before and after but never decides anything. Only the tuned layers are saved
(``encoder.layer.<i>.*`` keys of the Hugging Face model); the rest loads from the MiniLM package.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)
N_STATES = 3  # negative, positive, uncertain (labeller 0, 1, -1)


@dataclass
class NegationConfig:
    """One text-adapter run (saved next to the weights)."""

    out_dir: str
    iu_reports: str = ""  # IU reports CSV ("" = <data_root>/text/iu_reports.csv)
    n_layers: int = 2  # top MiniLM encoder layers to fine-tune (and ship)
    epochs: int = 6
    batch_size: int = 64
    lr: float = 5e-5
    margin: float = 0.5  # opposite-state sentences: penalised above this cosine
    keep_weight: float = 1.0  # weight of the stay-close-to-MiniLM term
    separate_weight: float = 1.0
    max_sentences: int = 0  # > 0: at most this many train sentences (tests; CPU budget)
    seed: int = 0


def labelled_sentences(csv_path: str | Path, split: str, limit: int = 0) -> tuple[list[str], np.ndarray]:
    """Distinct report sentences of ``split`` that mention >= 1 NIH finding, and their (S, 14) labeller states."""
    from radclip.io.labeller import label_report, split_sentences
    from radclip.io.labels import NIH_LABELS
    from radclip.io.reports import ReportCorpus

    seen: dict[str, None] = {}
    for text in ReportCorpus(csv_path, split=split).texts:
        for s in split_sentences(text):
            if len(s) > 3:
                seen.setdefault(s, None)
    sentences, rows = [], []
    for s in seen:
        lab = label_report(s)
        row = [lab[name] for name in NIH_LABELS]
        if not all(np.isnan(v) for v in row):
            sentences.append(s)
            rows.append(row)
    if limit:
        sentences, rows = sentences[:limit], rows[:limit]
    return sentences, np.asarray(rows, np.float32).reshape(-1, len(NIH_LABELS))


def state_targets(labels: np.ndarray) -> np.ndarray:
    """Labeller states -> class ids (0 negative, 1 positive, 2 uncertain; -100 = not mentioned, ignored)."""
    out = np.full(labels.shape, -100, np.int64)
    out[labels == 0] = 0
    out[labels == 1] = 1
    out[labels == -1] = 2
    return out


class SplitMiniLM:
    """A Hugging Face BERT split at layer ``L - n``: the frozen bottom once (cached), the top ``n`` trainable."""

    def __init__(self, hf_model: nn.Module, tokenizer: Any, n_layers: int) -> None:
        self.model, self.tokenizer = hf_model, tokenizer
        self.layers: nn.ModuleList = hf_model.encoder.layer
        if not 1 <= n_layers <= len(self.layers):
            raise ValueError(f"n_layers={n_layers}: choose 1..{len(self.layers)} top layers to tune")
        self.first = len(self.layers) - n_layers

    def tuned_prefixes(self) -> list[str]:
        return [f"encoder.layer.{i}." for i in range(self.first, len(self.layers))]

    @torch.no_grad()
    def bottom(self, texts: list[str], batch: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per text: (hidden states entering layer ``first`` (L, D), attention mask (L,)), unpadded."""
        self.model.eval()
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        for s in range(0, len(texts), batch):
            tok = self.tokenizer(texts[s : s + batch])
            hs = self.model(**tok, output_hidden_states=True).hidden_states[self.first]
            for h, m in zip(hs, tok["attention_mask"], strict=True):
                n = int(m.sum())
                out.append((h[:n].clone(), m[:n].clone()))
        return out

    def top(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the tuned layers on padded (B, L, D) states; returns the mean-pooled (B, D) sentence features."""
        from transformers.masking_utils import create_bidirectional_mask

        from radclip.models.text_encoder import masked_mean

        att = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=mask)
        h = hidden
        for layer in self.layers[self.first :]:
            h = layer(h, att)
            h = h[0] if isinstance(h, tuple) else h
        return masked_mean(h, mask)

    def tuned_state(self) -> dict[str, torch.Tensor]:
        pre = tuple(self.tuned_prefixes())
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k.startswith(pre)}


def pad(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad cached (L_i, D) states and masks into (B, L, D) and (B, L)."""
    n = max(len(m) for _, m in items)
    d = items[0][0].shape[-1]
    hidden = torch.zeros(len(items), n, d)
    mask = torch.zeros(len(items), n, dtype=torch.long)
    for i, (h, m) in enumerate(items):
        hidden[i, : len(m)], mask[i, : len(m)] = h, m
    return hidden, mask


def batch_loss(
    emb: torch.Tensor, ref: torch.Tensor, targets: torch.Tensor, probe: nn.Module, cfg: NegationConfig
) -> dict[str, torch.Tensor]:
    """The three terms (module docstring) for one batch of pooled embeddings ``emb`` and frozen ``ref``."""
    logits = probe(emb).view(len(emb), -1, N_STATES)
    state = F.cross_entropy(logits.reshape(-1, N_STATES), targets.reshape(-1), ignore_index=-100)
    unit = F.normalize(emb, dim=-1)
    cos = unit @ unit.T
    pos, neg = (targets == 1).float(), (targets == 0).float()
    opposite = ((pos @ neg.T) + (neg @ pos.T)) > 0  # share a finding, one affirms and one negates it
    separate = F.relu(cos[opposite] - cfg.margin).mean() if opposite.any() else cos.sum() * 0
    keep = (1 - F.cosine_similarity(emb, ref, dim=-1)).mean()
    loss = state + cfg.separate_weight * separate + cfg.keep_weight * keep
    return {"loss": loss, "state": state.detach(), "separate": separate.detach(), "keep": keep.detach()}


def _epoch(
    net: SplitMiniLM, data: dict[str, Any], probe: nn.Module, cfg: NegationConfig,
    opt: torch.optim.Optimizer | None, rng: np.random.Generator,
) -> dict[str, float]:  # fmt: skip
    """One pass over ``data`` (train when ``opt`` is given, else evaluate); mean of each loss term."""
    order = rng.permutation(len(data["cache"])) if opt else np.arange(len(data["cache"]))
    sums: dict[str, float] = {}
    n = 0
    for s in range(0, len(order), cfg.batch_size):
        idx = order[s : s + cfg.batch_size]
        hidden, mask = pad([data["cache"][i] for i in idx])
        with torch.set_grad_enabled(opt is not None):
            terms = batch_loss(net.top(hidden, mask), data["ref"][idx], data["targets"][idx], probe, cfg)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
        n += len(idx)
    return {k: round(v / max(n, 1), 5) for k, v in sums.items()}


def _prepare(net: SplitMiniLM, sentences: list[str], labels: np.ndarray) -> dict[str, Any]:
    cache = net.bottom(sentences)
    with torch.no_grad():
        ref = torch.cat([net.top(*pad(cache[s : s + 64])) for s in range(0, len(cache), 64)])
    return {"cache": cache, "ref": ref, "targets": torch.from_numpy(state_targets(labels))}


def pair_metrics(net: SplitMiniLM) -> dict[str, Any]:
    """Negation metrics of the pair set on the current (bottom + top) MiniLM, mean-pooled features."""
    from radclip.eval.negation import evaluate_negation

    def encode(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return net.top(*pad(net.bottom(texts))).numpy()

    return evaluate_negation(encode)


def train_negation(cfg: NegationConfig) -> dict[str, Any]:
    """Fine-tune the top layers; keep the lowest-IU-val-loss epoch; write weights + ``negation_report.json``."""
    from radclip.models.text_encoder import TextConfig, TextTrunk
    from radclip.models.weights import save_state_dict

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    iu = cfg.iu_reports or _default_iu()
    trunk = TextTrunk(TextConfig(kind="minilm", frozen=False))
    net = SplitMiniLM(trunk.model, trunk._tokenizer, cfg.n_layers)
    for p in trunk.model.parameters():
        p.requires_grad_(False)
    params = [p for layer in net.layers[net.first :] for p in layer.parameters()]
    for p in params:
        p.requires_grad_(True)
    t0 = time.time()
    before = pair_metrics(net)
    train = _prepare(net, *labelled_sentences(iu, "train", cfg.max_sentences))
    val = _prepare(net, *labelled_sentences(iu, "val", cfg.max_sentences))
    cache_s = round(time.time() - t0, 1)
    probe = nn.Linear(trunk.num_features, train["targets"].shape[1] * N_STATES)
    opt = torch.optim.AdamW([*params, *probe.parameters()], lr=cfg.lr, weight_decay=0.01)
    history, best = [], None
    for epoch in range(1, cfg.epochs + 1):
        for layer in net.layers[net.first :]:
            layer.train()
        tr = _epoch(net, train, probe, cfg, opt, rng)
        for layer in net.layers[net.first :]:
            layer.eval()
        va = _epoch(net, val, probe, cfg, None, rng)
        history.append({"epoch": epoch, "train": tr, "val": va, "elapsed_s": round(time.time() - t0, 1)})
        log.info("text negation epoch %d: train %s val %s", epoch, tr, va)
        if best is None or va["loss"] < best["val"]["loss"]:
            best = history[-1]
            save_state_dict(net.tuned_state(), out / "text_layers.safetensors")
    from radclip.models.weights import load_state_dict

    trunk.model.load_state_dict(load_state_dict(out / "text_layers.safetensors"), strict=False)
    for layer in net.layers[net.first :]:
        layer.eval()
    report = {
        "config": asdict(cfg),
        "n_train_sentences": len(train["cache"]),
        "n_val_sentences": len(val["cache"]),
        "selected_on": "IU val split: lowest val loss (state + separate + keep)",
        "best_epoch": best["epoch"] if best else None,
        "best_val": best["val"] if best else None,
        "history": history,
        "pairs_before": before,
        "pairs_after": pair_metrics(net),
        "cache_pass_s": cache_s,
        "wall_s": round(time.time() - t0, 1),
    }
    (out / "negation_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _default_iu() -> str:
    from radclip.settings import get_settings

    return str(Path(get_settings().data_root) / "text" / "iu_reports.csv")


def main(argv: list[str] | None = None) -> int:
    """``python -m radclip.train.text_negation --out-dir DIR``: train the text layers, print the summary."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m radclip.train.text_negation", description=__doc__)
    parser.add_argument(
        "--out-dir", required=True, help="folder for text_layers.safetensors + negation_report.json"
    )
    parser.add_argument(
        "--iu-reports", default="", help="IU reports CSV (default: <data_root>/text/iu_reports.csv)"
    )
    for name in ("n_layers", "epochs", "batch_size", "max_sentences", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(NegationConfig, name))
    for name in ("lr", "margin", "keep_weight", "separate_weight"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(NegationConfig, name))
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO)
    report = train_negation(NegationConfig(**args))
    keys = ("best_epoch", "best_val", "pairs_before", "pairs_after", "wall_s")
    print(json.dumps({k: report[k] for k in keys}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
