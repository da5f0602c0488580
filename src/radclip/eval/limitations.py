"""The report's closing limitations section, written from the measured numbers (regulatory style)."""

from __future__ import annotations

from typing import Any


def limitations(report: dict[str, Any]) -> list[dict[str, str]]:
    """A list of {"topic", "text"} statements; every count comes from ``report``."""
    data = report["data"]
    perf = report["performance"]
    fair = report["fairness"]
    sources = ", ".join(f"{s} {v['images']} images / {v['patients']} patients" for s, v in data["by_source"].items())
    too_few = perf["too_few_positives"]
    few = ", ".join(f"{n} ({v['n_pos']} pos / {v['n_neg']} neg)" for n, v in too_few.items()) or "none"
    measurable = [n for n, r in perf["triage"]["per_label"].items() if r["measurable"]]
    small = [f"{n} ({perf['triage']['per_label'][n]['n_pos']})" for n in measurable if perf["triage"]["per_label"][n]["n_pos"] < 15]
    flags = fair["flags"]
    sig = [f["key"] for f in flags if f["excludes_zero"]]
    embed = report.get("embedding", {})
    names = {"clip": "the image-text embeddings", "triage_features": "the triage network's penultimate features"}
    dominated = [names.get(k, k) for k, v in embed.items() if v.get("source_dominates")]
    calibrated = perf["triage"].get("ece_calibrated") is not None
    items = [
        ("Data sources and size", f"Evaluated split '{report['split']}': {data['n_images']} images from {data['n_patients']} patients ({sources}). "
         f"Ground-truth findings exist only for the NIH rows ({perf['n_images']} images, {perf['n_patients']} patients); COVID, Figure1 and Actualmed rows "
         "carry no NIH labels and enter only the retrieval, embedding-map and report-length analyses. The evaluation set is small; every CI is wide."),
        ("Label quality", "NIH ChestX-ray14 labels were text-mined from radiology reports by NLP (reported accuracy around 90%, lower for some findings); "
         "they are not radiologist-adjudicated. The NIH subset was balanced by its original author (about half 'No Finding'), so prevalences, PPV and NPV "
         "do not transfer to a clinical population."),
        ("Too few positives", f"Findings without >= 3 positives and >= 3 negatives in this split are not judged: {few}. "
         f"Measurable findings with fewer than 15 positives (CIs especially wide): {', '.join(small) or 'none'}."),
        ("Image quality", f"{data.get('nih_low_res_below_256px') or 0} of the split's images were obtained at below 256x256 pixels (most NIH images here "
         "are 64x64 copies upsampled to 256x256), far below clinical resolution; small findings (nodules, thin pneumothoraces) are barely visible. "
         "Results do not predict performance on full-resolution DICOM."),
        ("Reports", f"Only {data['n_with_report']} split images have free text (COVID-dataset clinical notes and Figure1 captions), which are case descriptions, "
         "not radiology reports; image-text retrieval numbers measure matching to such notes only."),
        ("Fairness coverage", f"Sex and age (bands <40, 40-60, >60) are analysed on NIH rows only (labelled rows per group: {'; '.join(f'{a} ' + ', '.join(f'{g} {n}' for g, n in gs.items()) for a, gs in fair['groups'].items())}). "
         "Ethnicity/race is absent from every source, so performance across ethnic groups is unknown and cannot be claimed. "
         f"{len(flags)} subgroup gap(s) exceed 0.05 ({len(sig)} with a bootstrap CI excluding zero: {', '.join(sig) or 'none'}); with a few dozen patients "
         "per group most gaps are not statistically resolved, and absence of a flag is not evidence of equal performance."),
        ("Site / source confounding", "Disease labels and source datasets are confounded (COVID cases come from other hospitals than NIH cases). "
         + (f"The embedding map shows source clusters dominating for: {', '.join(dominated)}; a model may partly recognise the source instead of the finding."
            if dominated else "The embedding map did not show source clusters dominating pathology clusters by our criterion, but the test has little power.")),
        ("Scope", "The models are research prototypes trained on the same small public data; they are not cleared medical devices and must not be used for "
         "diagnosis. " + ("Calibration (the card's per-label temperature and intercept) was fitted on the validation split of the same sources, not on the deployment population."
                     if calibrated else "The triage card carries no calibration: probabilities are uncalibrated.")),
    ]
    return [{"topic": t, "text": x} for t, x in items]
