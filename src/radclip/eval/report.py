"""``radclip report`` / ``radclip validate`` orchestration: compute every section from one model pass.

:func:`core_metrics` is what the release gate needs (performance, retrieval R@5, ECE, fairness);
:func:`build_report` adds error analysis, prompt sensitivity, embedding maps, figures, the HTML
page and the JSON twin. All numbers come from the given manifest and split.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from radclip.eval.report_inputs import EvalInputs, RunConfig, collect_inputs, model_summary

REPORT_VERSION = 1


def performance(inputs: EvalInputs, n_boot: int, seed: int, prevalence: np.ndarray | None = None) -> dict[str, Any]:
    """Per-label AUC with stratified patient-bootstrap CIs for triage and zero-shot, and their paired difference."""
    from radclip.eval.metrics import mean_auc, paired_auc_difference, per_label_auc
    from radclip.eval.triage_eval import Predictions, evaluate_predictions

    rows = inputs.nih_rows
    preds = Predictions(inputs.triage_logits[rows], inputs.labels[rows], list(inputs.frame["image_id"].iloc[rows]), list(inputs.patients[rows]))
    tri = evaluate_predictions(preds, list(inputs.names), calibration=inputs.triage_calibration, n_boot=n_boot, seed=seed, prevalence=prevalence)
    zs_res = per_label_auc(inputs.labels[rows], inputs.zs_scores[rows], inputs.names, groups=inputs.patients[rows], n_boot=n_boot, seed=seed)
    zs = {k: v.to_dict() for k, v in zs_res.items()}
    comparison = {}
    for k, name in enumerate(inputs.names):
        if not (tri["per_label"][name]["measurable"] and zs[name]["measurable"]):
            continue
        d = paired_auc_difference(inputs.labels[rows, k], inputs.zs_scores[rows, k], inputs.triage_logits[rows, k], inputs.patients[rows], n_boot=n_boot, seed=seed + k)
        verdict = "zero-shot better" if d["excludes_zero"] and d["diff"] > 0 else "supervised better" if d["excludes_zero"] else "no significant difference"
        comparison[name] = {"zs_minus_triage": d["diff"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "excludes_zero": d["excludes_zero"], "verdict": verdict}
    too_few = [n for n in inputs.names if not tri["per_label"][n]["measurable"]]
    keys = ("per_label", "mean_auc", "ece", "brier", "ece_calibrated", "brier_calibrated", "ece_per_label", "ece_per_label_calibrated",
            "ece_per_label_prevalence_baseline", "ece_prevalence_baseline_pooled")
    return {
        "n_images": int(len(rows)), "n_patients": int(len(set(inputs.patients[rows]))),
        "triage": {k: tri[k] for k in keys if k in tri},
        "zeroshot": {"per_label": zs, "mean_auc": mean_auc(zs_res)},
        "comparison": comparison,
        "too_few_positives": {n: {key: tri["per_label"][n][key] for key in ("n_pos", "n_neg", "n_pos_patients", "n_neg_patients")} for n in too_few},
        "bootstrap": {"n_boot": n_boot, "unit": "patient, stratified by positive/negative patient", "ci": 0.95, "seed": seed},
    }


def retrieval(inputs: EvalInputs) -> tuple[dict[str, Any] | None, np.ndarray, np.ndarray]:
    """R@K on the split's rows with a report; also (rows, matched cosine per row) for the length analysis."""
    from radclip.eval.retrieval import dedupe_texts, retrieval_report

    reports = inputs.frame["report"].astype(str).str.strip()
    rows = np.flatnonzero(reports.to_numpy() != "")
    if len(rows) < 2:
        return None, rows, np.zeros(0)
    texts, idx = dedupe_texts(list(reports.iloc[rows]))
    txt = inputs.encode_text(texts)
    img = inputs.clip_images[rows]
    out = retrieval_report(img, txt, idx)
    out["sources"] = sorted(inputs.frame["source"].iloc[rows].unique().tolist())
    sims = np.sum(img * txt[np.asarray(idx)], axis=1)
    return out, rows, sims


def fairness(inputs: EvalInputs, n_boot: int, seed: int) -> dict[str, Any]:
    from radclip.eval.fairness import attribute_groups, fairness_analysis

    rows = inputs.nih_rows
    attrs = {k: v[rows] for k, v in attribute_groups(inputs.frame).items()}
    scores = {"triage": inputs.triage_logits[rows], "zero-shot": inputs.zs_scores[rows]}
    return fairness_analysis(inputs.labels[rows], scores, inputs.names, attrs, inputs.patients[rows], n_boot=n_boot, seed=seed)


def core_metrics(inputs: EvalInputs, cfg: RunConfig) -> dict[str, Any]:
    """Everything the gate compares, plus the sections it is computed from."""
    from radclip.eval.gate import gate_metrics, score_block
    from radclip.eval.triage_eval import train_prevalence
    from radclip.io.manifest import data_snapshot, read_manifest

    prevalence = train_prevalence(read_manifest(cfg.manifest), list(inputs.names), ["nih"])
    perf = performance(inputs, cfg.n_boot, cfg.seed, prevalence)
    ret, _, _ = retrieval(inputs)
    fair = fairness(inputs, cfg.n_boot, cfg.seed)
    tri = perf["triage"]
    ece = {"triage_uncalibrated": tri.get("ece"), "triage_calibrated": tri.get("ece_calibrated"),
           "triage_calibrated_mean_per_label": (tri.get("ece_per_label_calibrated") or {}).get("mean"),
           "prevalence_baseline_mean_per_label": (tri.get("ece_per_label_prevalence_baseline") or {}).get("mean")}
    meta = {"split": cfg.split, "data_snapshot": data_snapshot(cfg.manifest), "n_images": int(len(inputs.frame)), "models": model_summary(inputs)}
    rows = inputs.nih_rows
    scores = score_block(list(inputs.names), list(inputs.frame["image_id"].iloc[rows]), inputs.patients[rows], inputs.labels[rows],
                         inputs.triage_logits[rows], inputs.zs_scores[rows])
    gate = gate_metrics(tri["per_label"], perf["zeroshot"]["per_label"], ret, ece, fair, meta, scores)
    return {"performance": perf, "retrieval": ret, "fairness": fair, "gate": gate}


def dataset_summary(inputs: EvalInputs) -> dict[str, Any]:
    """Sizes per source, patients, sexes and ages of the evaluated rows (for the tables and limitations)."""
    f = inputs.frame
    by_source = {s: {"images": int((f["source"] == s).sum()), "patients": int(f.loc[f["source"] == s, "patient_id"].nunique())} for s in sorted(f["source"].unique())}
    low_res = int((f.get("orig_width", np.nan) < 256).sum()) if "orig_width" in f.columns else None
    return {
        "n_images": int(len(f)), "n_patients": int(f["patient_id"].nunique()), "by_source": by_source,
        "n_with_report": int((f["report"].astype(str).str.strip() != "").sum()),
        "sex": {str(k): int(v) for k, v in f["sex"].replace("", "unknown").value_counts().items()},
        "age_known": int(f["age"].notna().sum()), "nih_low_res_below_256px": low_res,
        "positives_nih": {n: int((inputs.labels[:, k] == 1).sum()) for k, n in enumerate(inputs.names)},
    }


def analysis_sections(inputs: EvalInputs, cfg: RunConfig, core: dict[str, Any]) -> dict[str, Any]:
    """Error analysis, prompt sensitivity (overall and by group) and embedding maps."""
    from radclip.eval.embedding_map import clustering_stats, pathology_category
    from radclip.eval.error_analysis import (
        failure_cases,
        report_similarity,
        score_percentiles,
        template_aucs,
        topk_confusion,
    )
    from radclip.eval.fairness import attribute_groups, prompt_group_gaps

    rows = inputs.nih_rows
    lab = inputs.labels[rows]
    conf = {"triage": topk_confusion(lab, inputs.triage_probs[rows], inputs.names), "zero-shot": topk_confusion(lab, inputs.zs_scores[rows], inputs.names)}
    tri_pct = score_percentiles(lab, inputs.triage_logits[rows])
    zs_pct = score_percentiles(lab, inputs.zs_scores[rows])
    cases = failure_cases(lab, tri_pct, zs_pct, inputs.triage_probs[rows], inputs.names)
    for group in ("zeroshot_fails_supervised_succeeds", "supervised_fails_zeroshot_succeeds", "confident_false_positives"):
        for case in cases[group]:
            case["row"] = int(rows[case["row"]])  # back to frame rows
            case["image_id"] = str(inputs.frame["image_id"].iloc[case["row"]])
    prompts, tpl_scores = template_aucs(inputs.encode_text, inputs.clip_images[rows], lab, inputs.names)
    attrs = {k: v[rows] for k, v in attribute_groups(inputs.frame).items()}
    prompt_groups = prompt_group_gaps(lab, tpl_scores, inputs.names, attrs)
    _, ret_rows, sims = retrieval(inputs)
    similarity = report_similarity(list(inputs.frame["report"].iloc[ret_rows]), sims) if len(ret_rows) else {"n": 0}
    top = [n for n in ("Infiltration", "Effusion", "Atelectasis", "Cardiomegaly", "Pneumothorax", "Emphysema") if n in inputs.names]
    category = pathology_category(inputs.frame, inputs.labels, top)
    source = inputs.frame["source"].to_numpy().astype(object)
    embed = {"clip": clustering_stats(inputs.clip_images, source, category, rows), "triage_features": clustering_stats(inputs.triage_features, source, category, rows)}
    return {"error_analysis": {"topk_confusion": conf, "failure_cases": cases, "report_similarity": similarity},
            "prompt_sensitivity": prompts, "prompt_by_group": prompt_groups, "embedding": embed, "_category": category}


def build_report(cfg: RunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run everything, write ``report.html``, ``report.json`` and the PNG figures into ``out_dir``."""
    from radclip.eval.limitations import limitations
    from radclip.eval.report_figures import write_figures
    from radclip.eval.report_html import render_html

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = collect_inputs(cfg)
    core = core_metrics(inputs, cfg)
    extra = analysis_sections(inputs, cfg, core)
    category = extra.pop("_category")
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION, "manifest": str(cfg.manifest), "split": cfg.split, "models": model_summary(inputs),
        "data": dataset_summary(inputs), **core, **extra,
    }
    report["figures"] = write_figures(inputs, report, category, out, seed=cfg.seed)
    report["limitations"] = limitations(report)
    report["runtime_s"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    (out / "report.html").write_text(render_html(report))
    return report


def compute_gate(cfg: RunConfig) -> dict[str, Any]:
    """The ``gate`` block only (what ``radclip validate`` recomputes)."""
    return core_metrics(collect_inputs(cfg), cfg)["gate"]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
