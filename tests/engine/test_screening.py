"""Screening: cosine ranking, calibration fit and persistence, rules in the output, registry refresh."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fakes import HashingTextEmbedder

from radclip.engine.calibration import DEFAULT_CALIBRATION, fit_calibration, fit_logistic
from radclip.engine.registry import PromptRegistry
from radclip.engine.rules import StudyContext
from radclip.engine.screening import Screener, StaticConditions

CONDITIONS = {
    "Cardiomegaly": (["enlarged cardiac silhouette", "cardiomegaly"], "cardiomediastinal"),
    "Pneumothorax": (["visible pleural edge", "pneumothorax"], "pleural"),
    "aortic_unfolding": (["unfolded aorta", "ectatic aorta"], "cardiomediastinal"),
    "no_finding": (["normal chest", "clear lungs"], "normal"),
}


@pytest.fixture()
def registry(sqlite_url: str) -> PromptRegistry:
    reg = PromptRegistry(sqlite_url, HashingTextEmbedder())
    for name, (prompts, cat) in CONDITIONS.items():
        reg.register(name, prompts, category=cat)
    return reg


def test_fit_logistic_recovers_parameters() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 0.6, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-(25.0 * x - 5.0)))
    a, b = fit_logistic(x, y.astype(float))
    assert a == pytest.approx(25.0, rel=0.08) and b == pytest.approx(-5.0, rel=0.08)


def test_fit_calibration_skips_sparse_and_nan() -> None:
    rng = np.random.default_rng(1)
    cond = np.eye(3, 8, dtype=np.float32)
    imgs = rng.standard_normal((300, 8)).astype(np.float32)
    imgs /= np.linalg.norm(imgs, axis=1, keepdims=True)
    labels = np.stack([(imgs[:, 0] > 0.2), np.zeros(300, bool), imgs[:, 2] > 0], axis=1).astype(float)
    labels[:100, 2] = np.nan
    cals = fit_calibration(imgs, labels, ["a", "b", "c"], cond)
    assert set(cals) == {"a", "c"}  # "b" has no positives: stays on the default mapping
    assert cals["c"].n_pos + cals["c"].n_neg == 200 and cals["a"].scale > 10


def test_screen_ranks_matching_condition_first(registry: PromptRegistry) -> None:
    screener = Screener(registry, image_version="fake-image@1")
    names, mat = registry.embeddings_matrix()
    img = mat[names.index("Pneumothorax")] + 0.1 * mat[names.index("Cardiomegaly")]
    res = screener.screen(img, StudyContext(age_years=40, sex="F", view="PA"))
    assert res.findings[0].name == "Pneumothorax" and res.findings[0].calibrated is False
    cos = (img / np.linalg.norm(img)) @ mat.T
    got = {x.name: x for x in res.findings}
    for j, n in enumerate(names):
        assert got[n].cosine == pytest.approx(float(cos[j]), abs=1e-5)
    assert got["Pneumothorax"].confidence == pytest.approx(float(DEFAULT_CALIBRATION(cos[names.index("Pneumothorax")])), abs=1e-6)
    assert all(0.0 <= x.confidence <= 1.0 for x in res.findings)
    # no_finding capped by the positive finding, with the reason in the output
    assert [r.rule for r in res.rules] == ["no_finding_exclusive"]
    assert got["no_finding"].confidence == pytest.approx(1 - got["Pneumothorax"].confidence, abs=1e-6)
    d = res.to_dict()
    assert d["text_version"] == "fake-text@1" and len(d["findings"]) == 4


def test_rules_applied_in_screening_output(registry: PromptRegistry) -> None:
    names, mat = registry.embeddings_matrix()
    img = mat[names.index("aortic_unfolding")]
    res = Screener(registry).screen(img, StudyContext(age_years=6, view="LL"))
    top = res.findings[-1]
    assert top.name == "aortic_unfolding" and top.suppressed and top.confidence == 0.05  # suppressed sort last
    assert res.caveats and "lateral view" in res.caveats[0]
    assert [r.rule for r in res.rules][:1] == ["age_appropriate"]


def test_calibration_persisted_and_invalidated_by_new_version(registry: PromptRegistry) -> None:
    rng = np.random.default_rng(2)
    names, mat = registry.embeddings_matrix()
    j = names.index("Cardiomegaly")
    imgs = rng.standard_normal((400, mat.shape[1])).astype(np.float32)
    imgs /= np.linalg.norm(imgs, axis=1, keepdims=True)
    labels = ((imgs @ mat[j]) > 0.05).astype(float)[:, None]
    screener = Screener(registry, image_version="fake-image@1")
    cals = screener.fit_calibration(imgs, labels, ["Cardiomegaly"])
    assert cals["Cardiomegaly"].scale > 20  # a sharp boundary was learned
    fresh = Screener(registry, image_version="fake-image@1")  # loads the stored fit
    res = {x.name: x for x in fresh.screen(imgs[0]).findings}
    assert res["Cardiomegaly"].calibrated and not res["Pneumothorax"].calibrated
    assert res["Cardiomegaly"].confidence == pytest.approx(float(cals["Cardiomegaly"](res["Cardiomegaly"].cosine)), abs=1e-5)
    assert not {x.name: x for x in Screener(registry, image_version="fake-image@2").screen(imgs[0]).findings}["Cardiomegaly"].calibrated
    registry.register("Cardiomegaly", ["enlarged heart", "cardiomegaly"], category="cardiomediastinal")
    after = {x.name: x for x in fresh.screen(imgs[0]).findings}  # the registry change is seen at once
    assert not after["Cardiomegaly"].calibrated  # the fit belonged to version 1


def test_static_conditions_and_dimension_check() -> None:
    s = Screener(StaticConditions(["a", "b"], ["other", "other"], np.eye(2, 4, dtype=np.float32)))
    out = s.screen(np.array([0, 1, 0, 0], np.float32))
    assert [x.name for x in out.findings] == ["b", "a"] and out.findings[0].cosine == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same image-text model"):
        s.screen(np.ones(5, np.float32))


def test_reference_population_gives_unlabelled_conditions_a_z_score_mapping() -> None:
    """Without labels, confidence = sigmoid(1.5 (z - 2)) with z from the reference population's cosines."""
    from radclip.engine.calibration import ReferenceDistribution
    from radclip.engine.encoders import l2_normalise
    from radclip.engine.screening import Screener, StaticConditions

    rng = np.random.default_rng(0)
    dim = 16
    conds = l2_normalise(rng.standard_normal((3, dim)))
    population = l2_normalise(rng.standard_normal((400, dim)) + 2.0 * rng.standard_normal(dim))
    screener = Screener(StaticConditions(["a", "b", "c"], ["other"] * 3, conds), rules=[])
    before = screener.score(population[:5])[2]
    ref = ReferenceDistribution.from_embeddings(population)
    screener.set_reference(ref)
    _, cos, conf, calibrated = screener.score(population)
    assert not calibrated.any()
    z = (cos - cos.mean(axis=0)) / cos.std(axis=0)
    expected = 1 / (1 + np.exp(-1.5 * (z - 2.0)))
    np.testing.assert_allclose(conf, expected, atol=2e-3)  # analytic mean/cov == empirical cosine stats
    assert np.median(conf) < 0.1 < np.median(before)  # an average image is no longer "likely" for everything
    with pytest.raises(ValueError, match="at least 50"):
        ReferenceDistribution.from_embeddings(population[:10])
