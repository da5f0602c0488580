"""Render the report dict as one self-contained HTML page (figures referenced as sibling PNGs)."""

from __future__ import annotations

from html import escape
from typing import Any

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f1f1f1}td:first-child,th:first-child{text-align:left}.flag{color:#b00;font-weight:600}.muted{color:#777}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}"""


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return escape(str(v))


def _table(header: list[str], rows: list[list[Any]], raw: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw and isinstance(c, str) else _f(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ci(r: dict[str, Any]) -> str:
    if r.get("auc") is None:
        return "–"
    ci = f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if r.get("ci_low") is not None else ""
    return f"{r['auc']:.3f}{ci}" + ("" if r.get("measurable") else " <span class=muted>(too few)</span>")


def _img(report: dict[str, Any], key: str, alt: str) -> str:
    name = report.get("figures", {}).get(key)
    return f'<img src="{escape(name)}" alt="{escape(alt)}">' if name else f"<p class=muted>(no figure: {escape(alt)} had no data)</p>"


def _header(r: dict[str, Any]) -> str:
    d, m = r["data"], r["models"]
    src = _table(["source", "images", "patients"], [[s, v["images"], v["patients"]] for s, v in d["by_source"].items()] + [["all", d["n_images"], d["n_patients"]]])
    models = _table(["role", "model", "version", "weights sha256"], [[k, v["name"], v["version"], (v["weights_sha256"] or "")[:16]] for k, v in m.items()])
    return f"<h1>radclip evaluation report</h1><p>Manifest <code>{escape(r['manifest'])}</code>, split <b>{escape(str(r['split']))}</b>. Every number below is computed on these rows.</p>{models}{src}"


def _performance(r: dict[str, Any]) -> str:
    p = r["performance"]
    rows = []
    for n, t in p["triage"]["per_label"].items():
        z = p["zeroshot"]["per_label"][n]
        c = p["comparison"].get(n)
        verdict = "–" if c is None else f"{c['zs_minus_triage']:+.3f} [{_f(c['ci_low'])}, {_f(c['ci_high'])}]: {escape(c['verdict'])}"
        rows.append([n, f"{t['n_pos']} ({t.get('n_pos_patients', '?')})", f"{t['n_neg']} ({t.get('n_neg_patients', '?')})", _ci(t), _ci(z), verdict])
    table = _table(["finding", "pos images (patients)", "neg images (patients)", "supervised triage AUC [95% CI]", "zero-shot AUC [95% CI]",
                    "zero-shot − triage [paired 95% CI]"], rows, raw=True)
    few = ", ".join(f"{n} ({v.get('n_pos_patients', v['n_pos'])} pos / {v.get('n_neg_patients', v['n_neg'])} neg patients)" for n, v in p["too_few_positives"].items()) or "none"
    tri = p["triage"]
    return (f"<h2>1. Performance</h2><p>n = {p['n_images']} labelled (NIH) images from {p['n_patients']} patients; CIs: {p['bootstrap']['n_boot']} "
            f"patient-level bootstrap resamples. Mean AUC over measurable findings: triage <b>{_f(tri['mean_auc'])}</b>, zero-shot <b>{_f(p['zeroshot']['mean_auc'])}</b>. "
            f"Triage ECE {_f(tri.get('ece'))} (uncalibrated), {_f(tri.get('ece_calibrated'))} (calibrated: the card's per-label temperature and intercept).</p>{table}"
            f" Mean per-label ECE (calibrated) {_f((tri.get('ece_per_label_calibrated') or {}).get('mean'))} against "
            f"{_f((tri.get('ece_per_label_prevalence_baseline') or {}).get('mean'))} for an image-blind predictor of the training prevalence.</p>"
            f"<p class=note>Too few patients to judge (&lt;3 positive or &lt;3 negative patients): {escape(few)}.</p>"
            f"{_img(r, 'auc_forest', 'AUC forest plot')}{_img(r, 'reliability', 'reliability diagram')}{_retrieval(r)}")


def _retrieval(r: dict[str, Any]) -> str:
    ret = r.get("retrieval")
    if not ret:
        return "<p class=muted>No rows with reports: retrieval not measured.</p>"
    keys = [k for k in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "matched_cosine") if k in ret]
    return f"<h3>Image–report retrieval</h3><p>n = {ret['n_images']} images with text, {ret['n_texts']} distinct texts (sources {escape(', '.join(ret.get('sources', [])))}).</p>" + _table(keys, [[ret[k] for k in keys]])


def _errors(r: dict[str, Any]) -> str:
    e = r["error_analysis"]
    parts = ["<h2>2. Error analysis</h2><h3>Top-3 confusion between similar findings</h3>",
             "<p>For images positive for A (row): diagonal = share whose top-3 predicted findings (of 14) contain A; off-diagonal = share whose top-3 contain B, "
             "counted only over A-positive images that are <i>negative</i> for B (a confusion, not a co-occurrence). Row labels give n positives.</p>",
             _img(r, "confusion", "top-3 confusion")]
    cases = e["failure_cases"]
    counts = cases.get("counts", {})
    for group, title in (("zeroshot_fails_supervised_succeeds", "Zero-shot fails, supervised succeeds"), ("supervised_fails_zeroshot_succeeds", "Supervised fails, zero-shot succeeds"), ("confident_false_positives", "Confident false positives")):
        n = counts.get(group)
        parts.append(f"<h3>Gallery: {title}</h3><p>{'' if n is None else f'{n} (image, finding) pairs qualify; '}showing {len(cases[group])}.</p>{_img(r, f'gallery_{group}', title)}")
    sim = e["report_similarity"]
    if sim.get("n", 0) >= 5:
        parts.append(f"<h3>Report length/quality vs matched-pair similarity</h3><p>n = {sim['n']} image–text pairs; Spearman ρ with length (words) "
                     f"{_f(sim['length']['rho'])} (p {_f(sim['length']['p'])}); with informativeness (findings named) {_f(sim['informativeness']['rho'])} "
                     f"(p {_f(sim['informativeness']['p'])}).</p>{_img(r, 'report_similarity', 'similarity scatter')}")
    ps = r["prompt_sensitivity"]
    per = r["performance"]["zeroshot"]["per_label"]
    rows = [[n, per[n]["n_pos"], per[n]["n_neg"], *[ps["auc"][t][n] for t in ps["templates"]], s["spread"]] for n, s in ps["spread"].items() if s is not None]
    parts.append(f"<h3>Prompt sensitivity</h3><p>Zero-shot AUC with each single (positive, negative) template pair instead of the ensemble, on the {r['performance']['n_images']} labelled images.</p>"
                 + _table(["finding", "n pos", "n neg", *ps["templates"], "spread"], rows) + _img(r, "prompt_sensitivity", "prompt sensitivity"))
    return "".join(parts)


def _embedding(r: dict[str, Any]) -> str:
    rows = [[k, v["n"], v["silhouette_source"], v["silhouette_pathology"], v["knn_source_purity"], v["chance_source_purity"], v["knn_pathology_purity_nih"],
             "<span class=flag>YES</span>" if v["source_dominates"] else "no"] for k, v in r["embedding"].items()]
    return ("<h2>3. Embedding map</h2><p>Silhouette (cosine) by source on all rows, by pathology on NIH rows; kNN (k=10) purity vs chance. "
            "Flag: source silhouette &gt; 0 and &gt; pathology silhouette, and source purity ≥ chance + 0.15.</p>"
            + _table(["embedding", "n", "silhouette by source", "silhouette by pathology (NIH)", "kNN source purity", "chance", "kNN pathology purity (NIH)", "source dominates"], rows, raw=True)
            + _img(r, "embedding", "t-SNE maps"))


def _fairness(r: dict[str, Any]) -> str:
    fr = r["fairness"]
    groups = "; ".join(f"{a}: " + ", ".join(f"{g} {n}" for g, n in gs.items()) for a, gs in fr["groups"].items())
    rows = []
    for model, attrs in fr["models"].items():
        for attr, labels in attrs.items():
            for label, e in labels.items():
                grp = "; ".join(f"{g}: {_ci(v)} ({v['n_pos']}+/{v['n_neg']}−)" for g, v in e["groups"].items())
                gap = e["gap"]
                gtxt = "–" if gap is None else f"{gap['gap']:+.3f} [{_f(gap['ci_low'], 2)}, {_f(gap['ci_high'], 2)}] ({gap['higher']} − {gap['lower']})"
                flag = "" if gap is None else ("<span class=flag>FLAG</span>" if gap["flagged"] else "ok")
                rows.append([model, attr, label, grp, gtxt, flag, "–" if gap is None else _f(gap["excludes_zero"])])
    table = _table(["model", "attribute", "finding", "group AUC [95% CI] (pos/neg)", "gap [95% CI]", "flag (CI above 0.05)", "CI excludes 0"], rows, raw=True)
    pg = []
    for attr, labels in r.get("prompt_by_group", {}).items():
        for label, e in labels.items():
            pg.append([attr, label, f"{e['higher']} − {e['lower']}", min(e["gap_per_template"].values()), max(e["gap_per_template"].values()), e["spread"], "<span class=flag>yes</span>" if e["differs"] else "no"])
    return (f"<h2>4. Fairness</h2><p>Labelled rows per group: {escape(groups)}. Groups need ≥3 positive and ≥3 negative patients for an AUC. Gap CIs: paired bootstrap over patients "
            f"({fr['n_boot']} resamples). A gap is flagged only when its whole 95% CI lies above 0.05. {len(fr['flags'])} flag(s).</p>{table}{_img(r, 'fairness_gaps', 'fairness gaps')}"
            "<h3>Does prompt wording affect groups differently?</h3><p>Zero-shot group gap per template; 'differs' = spread over templates &gt; 0.05 or a sign change.</p>"
            + _table(["attribute", "finding", "pair", "min gap", "max gap", "spread", "differs"], pg, raw=True)
            + "<p class=note><b>Ethnicity is absent</b> from every data source: performance across ethnic groups is not measured and cannot be claimed.</p>")


def render_html(report: dict[str, Any]) -> str:
    lim = "".join(f"<li><b>{escape(x['topic'])}.</b> {escape(x['text'])}</li>" for x in report["limitations"])
    body = _header(report) + _performance(report) + _errors(report) + _embedding(report) + _fairness(report) + f"<h2>5. Limitations</h2><ol>{lim}</ol>"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>radclip evaluation report</title><style>{CSS}</style></head><body>{body}</body></html>\n"
