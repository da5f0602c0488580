"""Prompt registry on real SQLite: seed, versions, idempotency, validation, embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_fakes import HashingTextEmbedder

from radclip.engine.registry import CATEGORIES, SEED_PATH, PromptRegistry, RegistryError, ensemble
from radclip.engine.text_cache import TextEmbeddingCache
from radclip.io.labels import NIH_LABELS


def test_seed_file_is_clinically_complete() -> None:
    items = json.loads(SEED_PATH.read_text())["conditions"]
    names = [c["name"] for c in items]
    assert len(items) >= 60 and len(set(names)) == len(names)
    assert set(NIH_LABELS) | {"no_finding"} <= set(names)
    for required in ("pneumomediastinum", "sarcoidosis", "pneumoperitoneum", "rib_fracture", "tension_pneumothorax",
                     "ett_right_main_bronchus", "ngt_coiled_oesophagus", "cvc_malpositioned", "dextrocardia"):  # fmt: skip
        assert required in names
    assert all(len(c["prompts"]) >= 3 and c["category"] in CATEGORIES for c in items)
    assert not any("embol" in p.lower() for c in items for p in c["prompts"])  # radiographs cannot show PE


def test_seed_is_idempotent_and_batched(sqlite_url: str) -> None:
    inner = HashingTextEmbedder()
    reg = PromptRegistry(sqlite_url, TextEmbeddingCache(inner))
    n = len(json.loads(SEED_PATH.read_text())["conditions"])
    assert reg.load_seed() == {"registered": n, "unchanged": 0, "updated": 0}
    assert inner.calls == 1  # one batched call warmed the cache; every register hit it
    assert reg.load_seed() == {"registered": 0, "unchanged": n, "updated": 0}
    assert inner.calls == 1
    assert len(reg.list()) == n and all(c.registered_by == "seed" and c.version == 1 for c in reg.list())


def test_register_update_history_retire(sqlite_url: str, text_embedder: HashingTextEmbedder) -> None:
    reg = PromptRegistry(sqlite_url, text_embedder)
    r1 = reg.register("rib_fracture", ["rib fracture", "fractured rib", "broken rib"], ["broken rib"], "osseous", "alice")
    assert (r1.status, r1.version) == ("registered", 1)
    calls = text_embedder.calls
    r2 = reg.register("rib_fracture", ["rib fracture", "fractured rib", "broken rib"], ["broken rib"], "osseous", "bob")
    assert (r2.status, r2.version, r2.embedding_id) == ("unchanged", 1, r1.embedding_id)
    assert text_embedder.calls == calls  # idempotent: nothing re-embedded
    r3 = reg.register("rib_fracture", ["displaced rib fracture", "rib fracture"], category="osseous", registered_by="bob")
    assert (r3.status, r3.version) == ("updated", 2) and r3.embedding_id != r1.embedding_id
    hist = reg.history("rib_fracture")
    assert [h["version"] for h in hist] == [1, 2]
    assert hist[0]["prompts"] == ["rib fracture", "fractured rib", "broken rib"] and hist[0]["registered_by"] == "alice"
    assert [h["status"] for h in hist] == ["superseded", "active"]
    info = reg.retire("rib_fracture")
    assert info.status == "retired" and reg.list() == [] and len(reg.list(active_only=False)) == 1
    r4 = reg.register("rib_fracture", ["displaced rib fracture", "rib fracture"], category="osseous")
    assert (r4.status, r4.version) == ("updated", 3)  # re-activation is a new, audited version


@pytest.mark.parametrize(
    ("name", "prompts", "fragment"),
    [
        ("", ["a prompt"], "name is empty"),
        ("rib fracture", ["a prompt"], "not a slug"),
        ("ok_name", [], "give 1-32 prompts"),
        ("ok_name", ["p" * 301], "3-300"),
        ("ok_name", ["ab"], "3-300"),
        ("ok_name", ["Same prompt", "same  prompt"], "duplicate"),
        ("ok_name", "one string", "list of strings"),
        ("ok_name", ["x" * 10] * 1 + [f"prompt {i}" for i in range(32)], "give 1-32 prompts"),
    ],
)
def test_validation_names_the_fix(sqlite_url: str, text_embedder: HashingTextEmbedder, name, prompts, fragment) -> None:
    reg = PromptRegistry(sqlite_url, text_embedder)
    with pytest.raises(RegistryError, match=fragment):
        reg.register(name, prompts)
    assert text_embedder.calls == 0 and reg.list(active_only=False) == []


def test_unknown_category_and_name(sqlite_url: str, text_embedder: HashingTextEmbedder) -> None:
    reg = PromptRegistry(sqlite_url, text_embedder)
    with pytest.raises(RegistryError, match="use one of parenchymal"):
        reg.register("x_ray", ["a prompt"], category="lungs")
    reg.register("pneumothorax", ["collapsed lung", "pleural air"], category="pleural")
    with pytest.raises(RegistryError, match="did you mean 'pneumothorax'"):
        reg.history("pneumothorx")


def test_embeddings_matrix_ensemble_and_new_text_version(sqlite_url: str) -> None:
    v1 = HashingTextEmbedder(version="fake-text@1")
    reg = PromptRegistry(sqlite_url, v1)
    prompts = {"effusion_l": ["left pleural effusion", "fluid at the left base", "blunted left angle"],
               "ptx": ["pneumothorax", "pleural air", "collapsed lung"]}  # fmt: skip
    for n, p in prompts.items():
        reg.register(n, p, category="pleural")
    names, mat = reg.embeddings_matrix()
    assert names == ["effusion_l", "ptx"] and mat.shape == (2, 64) and mat.dtype == np.float32
    expected = ensemble(v1.encode_text(prompts["effusion_l"]))
    np.testing.assert_allclose(mat[0], expected, atol=1e-6)
    assert abs(np.linalg.norm(mat[1]) - 1) < 1e-5
    # A new text model: embeddings computed once per condition, then served from the database.
    v2 = HashingTextEmbedder(version="fake-text@2")
    reg2 = PromptRegistry(sqlite_url, v2)
    reg2.embeddings_matrix("fake-text@2")
    assert v2.calls == 2 and v2.texts_encoded == 6
    PromptRegistry(sqlite_url, v2).embeddings_matrix("fake-text@2")
    assert v2.calls == 2
    with pytest.raises(RegistryError, match="no stored embeddings for text model 'fake-text@3'"):
        reg2.embeddings_matrix("fake-text@3")
    # Retired conditions leave the matrix.
    reg.retire("ptx")
    assert reg.embeddings_matrix()[0] == ["effusion_l"]
