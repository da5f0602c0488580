"""The report's PNG figures (matplotlib, Agg). Each function writes one file and returns its name."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from radclip.eval.report_inputs import EvalInputs

DPI = 80  # small files: the whole report stays well under 3 MB
GALLERY_TITLES = {
    "zeroshot_fails_supervised_succeeds": "Zero-shot misses, supervised triage catches",
    "supervised_fails_zeroshot_succeeds": "Supervised triage misses, zero-shot catches",
    "confident_false_positives": "Confident false positives (triage)",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return name


def auc_forest(perf: dict[str, Any], out: Path) -> str:
    plt = _plt()
    names = list(perf["triage"]["per_label"])
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.2))
    for off, (key, colour, label) in zip((-0.17, 0.17), (("triage", "tab:blue", "supervised triage"), ("zeroshot", "tab:orange", "zero-shot")), strict=True):
        for i, n in enumerate(names):
            r = perf[key]["per_label"][n]
            if r["auc"] is None or not r["measurable"]:
                continue
            lo, hi = r["ci_low"] if r["ci_low"] is not None else r["auc"], r["ci_high"] if r["ci_high"] is not None else r["auc"]
            ax.errorbar(r["auc"], i + off, xerr=[[r["auc"] - lo], [hi - r["auc"]]], fmt="o", color=colour, capsize=3, label=label)
    ticks = [f"{n} ({perf['triage']['per_label'][n]['n_pos']} pos)" + ("" if perf["triage"]["per_label"][n]["measurable"] else " - too few") for n in names]
    ax.set_yticks(range(len(names)), ticks, fontsize=8)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), loc="lower left", fontsize=8)
    ax.set_xlabel("AUC (95% CI, patient bootstrap)")
    ax.set_title(f"Per-finding AUC on {perf['n_images']} labelled images, {perf['n_patients']} patients", fontsize=10)
    return _save(fig, out, "auc_forest.png")


def confusion(conf: dict[str, Any], out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(conf), figsize=(5.2 * len(conf), 4.6))
    for ax, (model, c) in zip(np.atleast_1d(axes), conf.items(), strict=True):
        m = np.array([[np.nan if v is None else v for v in row] for row in c["confusion"]])
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        labs = [f"{n} ({c['n_pos'][n]})" for n in c["labels"]]
        ax.set_xticks(range(len(labs)), c["labels"], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labs)), labs, fontsize=8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                txt = "-" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white" if not np.isnan(m[i, j]) and m[i, j] > 0.6 else "black")
        ax.set_xlabel("B: finding in the top-3 predictions")
        ax.set_ylabel("A: true finding (n positives)")
        ax.set_title(f"{model}: diagonal = top-3 recall;\noff-diagonal = B in top-3 while B absent", fontsize=9)
    fig.tight_layout()
    return _save(fig, out, "confusion_top3.png")


def _cam(inputs: EvalInputs, row: int, label: str) -> np.ndarray:
    import torch

    from radclip.explain.cam import class_activation_maps, normalize_maps, upsample_maps

    k = list(inputs.names).index(label)
    w, b = inputs.classifier
    feats = torch.from_numpy(inputs.triage_maps[row][None]).float()
    cam = class_activation_maps(feats, torch.from_numpy(w), torch.from_numpy(b), [k])
    size = inputs.triage_images.size
    return normalize_maps(upsample_maps(cam, size))[0, 0].numpy()


def _snippet(frame: Any, row: int) -> str:
    rep = str(frame["report"].iloc[row]).strip()
    if rep:
        return "report: " + textwrap.shorten(rep, 160, placeholder=" ...")
    return f"no report text for this image (source {frame['source'].iloc[row]} provides labels only)"


def gallery(inputs: EvalInputs, group: str, cases: list[dict[str, Any]], out: Path) -> str | None:
    from radclip.explain.overlay import overlay

    if not cases:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(cases), 3, figsize=(10, 2.7 * len(cases)), gridspec_kw={"width_ratios": [1, 1, 1.6]}, squeeze=False)
    for ax_row, case in zip(axes, cases, strict=True):
        r, lab = case["row"], case["label"]
        img = inputs.triage_images.image(r)[0]
        k = list(inputs.names).index(lab)
        ax_row[0].imshow(img, cmap="gray", vmin=0, vmax=1)
        ax_row[0].set_title(f"{case['image_id']}", fontsize=8)
        ax_row[1].imshow(overlay(img, _cam(inputs, r, lab)))
        ax_row[1].set_title(f"triage CAM for {lab} (red = high)", fontsize=8)
        truth = [n for j, n in enumerate(inputs.names) if inputs.labels[r, j] == 1] or ["no finding"]
        text = (f"finding: {lab} (truth: {'positive' if inputs.labels[r, k] == 1 else 'negative'})\n"
                f"triage: p={inputs.triage_probs[r, k]:.2f}, percentile {case['triage_pct']:.2f}\n"
                f"zero-shot: score={inputs.zs_scores[r, k]:+.3f}, percentile {case['zs_pct']:.2f}\n"
                f"true labels: {', '.join(truth)}\n" + "\n".join(textwrap.wrap(_snippet(inputs.frame, r), 52)))
        ax_row[2].text(0.0, 0.95, text, va="top", fontsize=8, family="monospace", transform=ax_row[2].transAxes)
        for ax in ax_row:
            ax.axis("off")
    fig.suptitle(GALLERY_TITLES[group] + "\n(percentile = share of the finding's negatives scoring lower)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, f"gallery_{group}.png")


def prompt_heatmap(prompts: dict[str, Any], out: Path) -> str | None:
    plt = _plt()
    labels = [n for n, s in prompts["spread"].items() if s is not None]
    if not labels:
        return None
    tpls = prompts["templates"]
    m = np.array([[prompts["auc"][t][n] for t in tpls] for n in labels], dtype=float)
    fig, ax = plt.subplots(figsize=(1.25 * len(tpls) + 3.5, 0.4 * len(labels) + 1.8))
    ax.imshow(m, cmap="RdYlGn", vmin=0.3, vmax=0.9, aspect="auto")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(tpls)), [textwrap.fill(t.replace("{}", "…"), 18) for t in tpls], fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{n} (spread {prompts['spread'][n]['spread']:.2f})" for n in labels], fontsize=8)
    ax.set_title("Zero-shot AUC per prompt template (measurable findings)", fontsize=10)
    return _save(fig, out, "prompt_sensitivity.png")


def tsne_maps(inputs: EvalInputs, category: np.ndarray, embed: dict[str, Any], out: Path, seed: int) -> str:
    from radclip.eval.embedding_map import tsne_2d

    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5))
    source = inputs.frame["source"].to_numpy().astype(str)
    for row, (key, x, title) in enumerate((("clip", inputs.clip_images, "image-text embeddings"), ("triage_features", inputs.triage_features, "triage penultimate features"))):
        xy = tsne_2d(x, seed=seed)
        st = embed[key]
        for col, (groups, what) in enumerate(((source, "source dataset"), (category.astype(str), "pathology"))):
            ax = axes[row, col]
            cmap = plt.get_cmap("tab10")
            for i, g in enumerate(sorted(set(groups))):
                sel = groups == g
                ax.scatter(xy[sel, 0], xy[sel, 1], s=9, color=cmap(i % 10), label=f"{g} ({int(sel.sum())})", alpha=0.8)
            ax.legend(fontsize=7, markerscale=1.5, loc="best")
            ax.set_xticks([])
            ax.set_yticks([])
            sil = st["silhouette_source"] if col == 0 else st["silhouette_pathology"]
            extra = f"kNN source purity {st['knn_source_purity']:.2f} (chance {st['chance_source_purity']:.2f})" if col == 0 else "silhouette on NIH rows only"
            flag = "  SOURCE CLUSTERS DOMINATE" if col == 0 and st["source_dominates"] else ""
            ax.set_title(f"{title} by {what}\nsilhouette {_f(sil)}; {extra}{flag}", fontsize=9, color="firebrick" if flag else "black")
    fig.suptitle(f"t-SNE of {len(source)} split images", fontsize=11)
    fig.tight_layout()
    return _save(fig, out, "embedding_tsne.png")


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def fairness_gaps(fair: dict[str, Any], out: Path) -> str | None:
    plt = _plt()
    entries = []
    for model, attrs in fair["models"].items():
        for attr, labels in attrs.items():
            for label, e in labels.items():
                if e["gap"] is not None:
                    entries.append((f"{model} | {attr} | {label}: {e['gap']['higher']} vs {e['gap']['lower']}", e["gap"]))
    if not entries:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.33 * len(entries) + 1.5))
    for i, (_, g) in enumerate(entries):
        lo = g["ci_low"] if g["ci_low"] is not None else g["gap"]
        hi = g["ci_high"] if g["ci_high"] is not None else g["gap"]
        colour = "firebrick" if g["flagged"] else "grey"
        ax.errorbar(g["gap"], i, xerr=[[g["gap"] - lo], [hi - g["gap"]]], fmt="o", color=colour, capsize=2)
    ax.axvline(fair["threshold"], color="firebrick", ls="--", lw=0.8)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(range(len(entries)), [e[0] for e in entries], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("AUC gap = AUC(best group) - AUC(worst group), 95% paired patient-bootstrap CI\nred = flagged (whole CI above 0.05, dashed line)")
    ax.set_title("Subgroup AUC gaps", fontsize=10)
    return _save(fig, out, "fairness_gaps.png")


def similarity_scatter(inputs: EvalInputs, sim: dict[str, Any], out: Path) -> str | None:
    from radclip.eval.report import retrieval

    _, rows, sims = retrieval(inputs)
    if len(rows) < 5:
        return None
    plt = _plt()
    words = [len(str(r).split()) for r in inputs.frame["report"].iloc[rows]]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(words, sims, s=12)
    ax.set_xscale("log")
    ax.set_xlabel("report length (words, log scale)")
    ax.set_ylabel("cosine(image, its own report)")
    rho = (sim.get("length") or {}).get("rho")
    ax.set_title(f"Matched-pair similarity vs report length (n={len(rows)}, Spearman rho {_f(rho)})", fontsize=10)
    return _save(fig, out, "report_similarity.png")


def write_figures(inputs: EvalInputs, report: dict[str, Any], category: np.ndarray, out: Path, seed: int = 0) -> dict[str, str]:
    """Every figure; returns {figure key: file name} for those written."""
    from radclip.eval.calibration import calibrated_probs, reliability_diagram

    figs: dict[str, str | None] = {
        "auc_forest": auc_forest(report["performance"], out),
        "confusion": confusion(report["error_analysis"]["topk_confusion"], out),
        "prompt_sensitivity": prompt_heatmap(report["prompt_sensitivity"], out),
        "embedding": tsne_maps(inputs, category, report["embedding"], out, seed),
        "fairness_gaps": fairness_gaps(report["fairness"], out),
        "report_similarity": similarity_scatter(inputs, report["error_analysis"]["report_similarity"], out),
    }
    for group, cases in report["error_analysis"]["failure_cases"].items():
        if group in GALLERY_TITLES:
            figs[f"gallery_{group}"] = gallery(inputs, group, cases, out)
    rows = inputs.nih_rows
    curves = {"uncalibrated": calibrated_probs(inputs.triage_logits[rows], None)}
    if inputs.triage_calibration is not None:
        curves["calibrated"] = calibrated_probs(inputs.triage_logits[rows], inputs.triage_calibration)
    reliability_diagram(inputs.labels[rows], curves, out / "reliability.png", title=f"Triage reliability: {len(rows)} images x {len(inputs.names)} findings pooled")
    figs["reliability"] = "reliability.png"
    return {k: v for k, v in figs.items() if v}
