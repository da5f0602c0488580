"""Prompt transfer vs zero-shot: the evaluation prompt set is what is encoded, cohorts, naming, measurability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radclip.eval.prompt_sets import all_eval_prompts
from radclip.eval.zeroshot import eval_set_embeddings, prompt_transfer
from radclip.eval.zeroshot_cohorts import covid_tasks, label_kind, pediatric_pneumonia_task
from radclip.io.labels import NIH_LABELS
from radclip.models.prompts import negative_prompts, positive_prompts


def _encoder(seen: list[str]):  # noqa: ANN202
    table: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)

    def encode(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        rows = [table.setdefault(t, rng.normal(size=8)) for t in texts]
        return np.stack(rows) / np.linalg.norm(np.stack(rows), axis=1, keepdims=True)

    return encode


def test_only_evaluation_prompts_are_encoded() -> None:
    seen: list[str] = []
    pos, neg = eval_set_embeddings(_encoder(seen), [*NIH_LABELS, "pediatric_pneumonia", "covid19"])
    assert pos.shape == neg.shape == (16, 8)
    training = {p for lab in NIH_LABELS for p in (*positive_prompts(lab), *negative_prompts(lab))}
    assert seen and set(seen) <= set(all_eval_prompts()) and not set(seen) & training


def test_prompt_transfer_means_measurable_labels_and_pairs_with_triage() -> None:
    rng = np.random.default_rng(1)
    n = 120
    patients = np.array([f"p{i // 2}" for i in range(n)])  # two images per patient
    labels = (rng.random((n, 14)) < 0.3).astype(np.float32)
    labels[:, 13] = 0
    labels[:4, 13] = 1  # Hernia: 4 positive images from 2 patients -> not measurable
    img = rng.normal(size=(n, 8)).astype(np.float32)
    triage = rng.normal(size=(n, 14))
    out = prompt_transfer(_encoder([]), img, labels, patients, triage, n_boot=50)
    hernia = out["per_label"]["Hernia"]
    assert (hernia["n_pos_images"], hernia["n_pos_patients"], hernia["measurable"]) == (4, 2, False)
    assert "Hernia" not in out["measurable_labels"] and len(out["measurable_labels"]) == 13
    measured = [out["per_label"][n]["auc"] for n in out["measurable_labels"]]
    assert out["mean_auc"] == pytest.approx(np.mean(measured))
    eff = out["per_label"]["Effusion"]
    assert eff["vs_triage"]["auc_a"] == pytest.approx(eff["auc"])
    assert eff["vs_triage"]["diff"] == pytest.approx(eff["auc"] - eff["vs_triage"]["auc_b"])
    diffs = [out["per_label"][n]["vs_triage"]["diff"] for n in out["measurable_labels"]]
    assert out["mean_diff_vs_triage"]["diff"] == pytest.approx(np.mean(diffs))
    assert out["n_patients"] == 60


def _frame() -> pd.DataFrame:
    rows = [
        ("kermany", "k1", "Pneumonia (bacterial)", ""),
        ("kermany", "k2", "Pneumonia (viral)", ""),
        ("kermany", "k3", "No finding", "1"),
        ("nih", "n1", "No Finding", "1"),
        ("nih", "n2", "Effusion", "0"),
        ("hannover", "h1", "COVID-19", ""),
        ("covid", "c1", "COVID-19, ARDS", ""),
        ("covid", "c2", "Streptococcus", ""),
        ("covid", "c3", "", ""),
        ("actualmed", "a1", "No finding", "1"),
    ]
    return pd.DataFrame(rows, columns=["source", "patient_id", "finding", "no_finding"])


def test_cohorts() -> None:
    frame = _frame()
    ped = pediatric_pneumonia_task(frame)
    assert ped is not None and ped.rows.tolist() == [0, 1, 2] and ped.y.tolist() == [1, 1, 0]
    assert ped.triage_label == "Pneumonia"
    nih_neg, era = covid_tasks(frame)
    assert nih_neg.rows.tolist() == [3, 5, 6] and nih_neg.y.tolist() == [0, 1, 1]
    assert era.rows.tolist() == [5, 6, 7, 9] and era.y.tolist() == [1, 1, 0, 0]  # blank finding left out


def test_covid_is_not_called_zero_shot_when_notes_were_trained() -> None:
    frame = _frame()
    covid = covid_tasks(frame)[0]
    assert (
        label_kind(covid, "sources nih,iu,covid; 388 covid/figure1 images with notes")
        == "prompt_transfer_from_notes"
    )
    assert label_kind(covid, "") == "prompt_transfer_from_notes"  # unknown training: not claimed zero-shot
    assert label_kind(covid, "sources nih,iu") == "zero_shot"
    ped = pediatric_pneumonia_task(frame)
    assert ped is not None and label_kind(ped, "sources nih,iu,covid") == "zero_shot"
    assert label_kind(ped, "kermany images as extra training data") == "trained_on_this_source"


def test_training_sources_keep_kermany_and_hannover_out(cxr_manifest: Path) -> None:
    """clip_data's only image-text sources: NIH label captions and rows with a manifest ``report``."""
    frame = pd.read_csv(cxr_manifest, dtype=str, keep_default_na=False)
    with_notes = frame[frame["report"].str.strip() != ""]
    assert set(with_notes["source"]) <= {"covid", "figure1"}
    train_notes = with_notes[with_notes["split"] == "train"]["report"].str.lower()
    assert train_notes.str.contains("covid").sum() > 100  # so COVID-19 is not zero-shot for such a model
    assert not train_notes.str.contains("pediatric|paediatric|kermany").any()


def test_shipped_card_names_covid_as_notes_transfer() -> None:
    from radclip.models.registry import find_card
    from radclip.models.weights import WeightsError

    try:
        card, _ = find_card("radclip-medclip-mini")
    except WeightsError:
        pytest.skip("radclip-medclip-mini is not shipped in this checkout")
    covid = covid_tasks(_frame())[0]
    assert label_kind(covid, f"{card.source} {card.training_data}") == "prompt_transfer_from_notes"


def test_command_summary_names_both_numbers() -> None:
    from radclip.commands.eval_zeroshot import summary

    row = {"auc": 0.8, "lo": 0.7, "hi": 0.9, "n_pos_patients": 5, "n_neg_patients": 7}
    report = {
        "split": "test",
        "prompt_transfer": {
            "mean_auc": 0.6,
            "measurable_labels": ["Effusion"],
            "mean_diff_vs_triage": {"diff": -0.1, "lo": -0.2, "hi": 0.0},
        },
        "zero_shot": {"pediatric_pneumonia": row},
        "prompt_transfer_from_notes": {"covid19_vs_nih_no_finding": row},
    }
    out = summary(report)
    assert out["prompt_transfer_mean_auc"] == 0.6 and out["prompt_transfer_minus_triage"] == [-0.1, -0.2, 0.0]
    assert out["zero_shot/pediatric_pneumonia"][:3] == [0.8, 0.7, 0.9]
    assert "prompt_transfer_from_notes/covid19_vs_nih_no_finding" in out
    assert not any(k.startswith("zero_shot/covid") for k in out)


def test_no_finding_column_means_no_beyond_nih_tasks() -> None:
    frame = _frame().drop(columns=["finding"])
    assert pediatric_pneumonia_task(frame) is None
    assert [t.name for t in covid_tasks(frame)] == []
