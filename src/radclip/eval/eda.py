"""Exploratory data analysis of a manifest: PNG charts, ``eda.json`` and an ``index.html``.

``build_eda_report(manifest, images_root, out_dir, reports_csv=None)`` writes:

* ``label_frequency.png``: positives per label and split (horizontal bars);
* ``samples.png``: a 3x3 grid of images with their findings and a report snippet;
* ``report_lengths.png``: report length in tokens (manifest reports; IU reports if given);
* ``intensity.png``: per-image mean and standard deviation of pixel values, per source;
* ``eda.json``: every number shown, and ``index.html`` linking it all, with the table of
  conditions that have fewer than ``RARE_THRESHOLD`` positive examples.

Matplotlib is used through its object API with the Agg canvas, so no global backend is set.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radclip.io.labels import NIH_LABELS, NO_FINDING, REPORT_LABELS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

RARE_THRESHOLD = 100  # conditions with fewer positive images than this are flagged
DPI = 80  # small PNGs: the whole report stays well under 2 MB
SPLITS = ("train", "val", "test")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")


def count_tokens(text: str) -> int:
    """Word tokens (letters/digits runs) in ``text``; the unit of the report-length histogram."""
    return len(_TOKEN.findall(text or ""))


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path.name


def label_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{label: {split: positives, ..., "all": positives}} over REPORT_LABELS (NaN = unknown, not counted)."""
    splits = [s for s in SPLITS if s in set(frame["split"])] + sorted(set(frame["split"]) - set(SPLITS))
    out: dict[str, dict[str, int]] = {}
    for label in REPORT_LABELS:
        per = {s: int((frame.loc[frame["split"] == s, label] == 1).sum()) for s in splits}
        per["all"] = int((frame[label] == 1).sum())
        out[label] = per
    return out


def rare_conditions(frame: pd.DataFrame, threshold: int = RARE_THRESHOLD) -> list[dict[str, Any]]:
    """Conditions with fewer than ``threshold`` positive images: the NIH labels, and each other source's own finding text."""
    rows: list[dict[str, Any]] = []
    for label, per in label_counts(frame).items():
        if label != NO_FINDING and per["all"] < threshold:
            rows.append({"condition": label, "source": "nih (label)", **per})
    if "finding" in frame.columns:
        text = frame["finding"].fillna("").astype(str).str.strip()
        other = frame[(frame["source"] != "nih") & (text != "") & (text.str.lower() != "no finding")]
        for (source, finding), group in other.groupby(["source", "finding"]):
            if len(group) < threshold:
                per = {s: int((group["split"] == s).sum()) for s in SPLITS}
                rows.append({"condition": str(finding), "source": f"{source} (finding)", **per, "all": len(group)})
    return sorted(rows, key=lambda r: (r["all"], r["condition"]))


def intensity_stats(frame: pd.DataFrame, images_root: Path) -> pd.DataFrame:
    """Per image: mean and standard deviation of the loader's [0, 1] pixels."""
    import pandas as pd

    from radclip.io.datasets import load_pixels

    rows = []
    for image_id, source, rel in zip(frame["image_id"], frame["source"], frame["path"], strict=True):
        pixels = load_pixels(images_root / rel)
        rows.append({"image_id": image_id, "source": source, "mean": float(pixels.mean()), "std": float(pixels.std())})
    return pd.DataFrame(rows, columns=["image_id", "source", "mean", "std"])


def _plot_label_frequency(counts: dict[str, dict[str, int]], out_dir: Path) -> str:
    splits = [s for s in next(iter(counts.values())) if s != "all"]
    fig = _figure(7.5, 6.0)
    ax = fig.add_subplot()
    y = np.arange(len(REPORT_LABELS))
    height = 0.8 / max(len(splits), 1)
    for k, split in enumerate(splits):
        values = [counts[label][split] for label in REPORT_LABELS]
        bars = ax.barh(y + (k - (len(splits) - 1) / 2) * height, values, height=height, label=split)
        ax.bar_label(bars, fontsize=6, padding=1)
    ax.set_yticks(y, REPORT_LABELS, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(RARE_THRESHOLD, color="grey", linestyle=":", linewidth=1, label=f"rare threshold ({RARE_THRESHOLD}, all splits)")
    ax.set_xlabel("positive images (the 14 findings: NIH only; no_finding: every source that states it)", fontsize=9)
    ax.set_title("Label frequency per split")
    ax.legend(fontsize=8)
    return _save(fig, out_dir / "label_frequency.png")


def _sample_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to ``n`` rows, round-robin over sources (each shuffled with ``seed``), so every source shows."""
    rng = np.random.default_rng(seed)
    pools = {s: list(rng.permutation(frame.index[frame["source"] == s])) for s in sorted(frame["source"].unique())}
    chosen: list[int] = []
    while len(chosen) < min(n, len(frame)):
        for pool in pools.values():
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop()))
    return frame.loc[chosen]


def _findings_text(row: pd.Series) -> str:
    positives = [label for label in NIH_LABELS if row[label] == 1]
    if positives:
        return ", ".join(positives)
    if row[NO_FINDING] == 1:
        return "No finding"
    finding = row.get("finding")
    return str(finding) if isinstance(finding, str) and finding.strip() else "(no label)"


def _plot_samples(frame: pd.DataFrame, images_root: Path, out_dir: Path, seed: int, licence: str | None) -> str:
    from radclip.io.datasets import load_pixels

    if licence is not None:  # only images whose licence allows showing them where the report is published
        pattern = re.compile(licence)
        licences = frame["license"].fillna("").astype(str) if "license" in frame.columns else frame["image_id"].map(lambda _: "")
        keep = licences.map(lambda text: bool(pattern.search(text)))
        if not keep.any():
            raise ValueError(f"no manifest row has a 'license' matching {licence!r}; loosen the sample licence pattern")
        frame = frame[keep]
    rows = _sample_rows(frame, 9, seed)
    fig = _figure(9.0, 11.0)
    axes = fig.subplots(3, 3)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for ax, (_, row) in zip(axes.ravel(), rows.iterrows(), strict=False):
        ax.imshow(load_pixels(images_root / row["path"]), cmap="gray", vmin=0.0, vmax=1.0)
        snippet = textwrap.shorten(row["report"], width=110, placeholder="...") if row["report"] else "(no report)"
        head = f"{row['source']} / {row['split']} / {row['view'] or '?'}"
        if licence is not None:
            head += f" / {str(row['license']).split(' (')[0][:18]}"
        ax.set_title(f"{head}\n{textwrap.shorten(_findings_text(row), 40)}", fontsize=8)
        # The snippet goes in the x label so the constrained layout leaves room for it.
        ax.set_xlabel("\n".join(textwrap.wrap(snippet, 40)), fontsize=6.5)
    return _save(fig, out_dir / "samples.png")


def _plot_report_lengths(lengths: dict[str, list[int]], out_dir: Path) -> str:
    """One panel per corpus (their sizes differ ten-fold, so shared axes would hide the small one)."""
    names = [name for name, values in lengths.items() if values] or list(lengths)
    fig = _figure(7.0, 1.2 + 2.0 * len(names))
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    top = max((max(v) for v in lengths.values() if v), default=1)
    bins = np.linspace(0, min(top, 300), 31)
    for ax, name, color in zip(axes, names, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        values = lengths[name]
        if values:
            ax.hist(np.clip(values, 0, bins[-1]), bins=bins, color=color)
            ax.axvline(float(np.median(values)), color="black", linestyle="--", linewidth=1)
        median = int(np.median(values)) if values else 0
        ax.set_title(f"{name}: n={len(values)}, median {median} tokens (dashed)", fontsize=9)
        ax.set_ylabel("reports")
    axes[-1].set_xlabel(f"tokens per report (longer ones counted in the last bin, {int(bins[-1])})")
    return _save(fig, out_dir / "report_lengths.png")


def _plot_intensity(stats: pd.DataFrame, out_dir: Path) -> str:
    sources = sorted(stats["source"].unique())
    fig = _figure(8.0, 3.6)
    for k, column in enumerate(("mean", "std")):
        ax = fig.add_subplot(1, 2, k + 1)
        data = [stats.loc[stats["source"] == s, column].to_numpy() for s in sources]
        ax.boxplot(data, tick_labels=[f"{s}\n(n={len(d)})" for s, d in zip(sources, data, strict=True)], showfliers=True, flierprops={"markersize": 2})
        ax.set_title(f"per-image {'brightness (mean)' if column == 'mean' else 'contrast (std)'}", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.set_ylim(0, 1 if column == "mean" else 0.5)
    return _save(fig, out_dir / "intensity.png")


def _describe(values: list[int] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"n": 0}
    stats = {"mean": arr.mean(), "median": np.median(arr), "p10": np.percentile(arr, 10), "p90": np.percentile(arr, 90), "min": arr.min(), "max": arr.max()}
    return {"n": int(arr.size), **{k: round(float(v), 4) for k, v in stats.items()}}


def build_eda_report(
    manifest: str | Path | pd.DataFrame,
    images_root: str | Path,
    out_dir: str | Path,
    reports_csv: str | Path | None = None,
    seed: int = 0,
    sample_licence: str | None = None,
) -> Path:
    """Write the EDA charts, ``eda.json`` and ``index.html`` into ``out_dir``; return the HTML path.

    ``sample_licence``: a regex on the manifest's ``license`` column; when set, the sample grid
    shows only matching images (e.g. ``"^(CC0|CC BY(?!-N))"`` for a report committed to a repository).
    """
    from radclip.io.manifest import read_manifest, validate_manifest

    frame = read_manifest(manifest) if isinstance(manifest, str | Path) else validate_manifest(manifest)
    images_root, out_dir = Path(images_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = label_counts(frame)
    stats = intensity_stats(frame, images_root)
    lengths = {"manifest reports": [count_tokens(t) for t in frame["report"] if t.strip()]}
    if reports_csv is not None:
        from radclip.io.reports import ReportCorpus

        lengths["IU reports"] = [count_tokens(t) for t in ReportCorpus(reports_csv).texts if t.strip()]
    summary: dict[str, Any] = {
        "n_images": len(frame),
        "images_by_source_split": {s: {k: int(v) for k, v in g.groupby("split").size().items()} for s, g in frame.groupby("source")},
        "patients_by_source": {s: int(g["patient_id"].nunique()) for s, g in frame.groupby("source")},
        "label_counts": counts,
        "rare_threshold": RARE_THRESHOLD,
        "sample_licence": sample_licence,
        "rare_conditions": rare_conditions(frame),
        "report_tokens": {name: _describe(v) for name, v in lengths.items()},
        "intensity": {s: {"mean": _describe(g["mean"].to_numpy()), "std": _describe(g["std"].to_numpy())} for s, g in stats.groupby("source")},
        "figures": {
            "label_frequency": _plot_label_frequency(counts, out_dir),
            "samples": _plot_samples(frame, images_root, out_dir, seed, sample_licence),
            "report_lengths": _plot_report_lengths(lengths, out_dir),
            "intensity": _plot_intensity(stats, out_dir),
        },
    }
    (out_dir / "eda.json").write_text(json.dumps(summary, indent=2) + "\n")
    index = out_dir / "index.html"
    index.write_text(_html(summary))
    return index


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(summary: dict[str, Any]) -> str:
    figs = summary["figures"]
    by_source = [{"source": s, **per, "total": sum(per.values()), "patients": summary["patients_by_source"][s]}
                 for s, per in summary["images_by_source_split"].items()]
    splits = sorted({k for per in summary["images_by_source_split"].values() for k in per})
    labels = [{"label": name, **per} for name, per in summary["label_counts"].items()]
    rare = summary["rare_conditions"]
    split_cols = [s for s in SPLITS if s in splits] + [s for s in splits if s not in SPLITS]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>radclip EDA</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>",
        f"<h1>radclip EDA</h1><p>Images: <b id='n_images'>{summary['n_images']}</b></p>",
        "<h2>Images per source and split</h2>", _table(by_source, ["source", *split_cols, "total", "patients"]),
        "<h2>Label frequency</h2>", f"<img src='{figs['label_frequency']}' alt='label frequency'>",
        _table(labels, ["label", *split_cols, "all"]),
        f"<h2>Conditions with fewer than {summary['rare_threshold']} positive images (<span id='n_rare'>{len(rare)}</span>)</h2>",
        _table(rare, ["condition", "source", *SPLITS, "all"]),
        "<h2>Samples</h2>", f"<img src='{figs['samples']}' alt='sample images'>",
        "<h2>Report length (tokens)</h2>", f"<img src='{figs['report_lengths']}' alt='report lengths'>",
        _table([{"corpus": k, **v} for k, v in summary["report_tokens"].items()], ["corpus", "n", "mean", "median", "p10", "p90", "max"]),
        "<h2>Brightness and contrast per source</h2>", f"<img src='{figs['intensity']}' alt='intensity'>",
        _table([{"source": s, "mean brightness": v["mean"].get("mean"), "mean contrast (std)": v["std"].get("mean"), "n": v["mean"]["n"]}
                for s, v in summary["intensity"].items()], ["source", "n", "mean brightness", "mean contrast (std)"]),
        "<p>All numbers: <a href='eda.json'>eda.json</a>.</p></body></html>",
    ]
    return "\n".join(parts)
