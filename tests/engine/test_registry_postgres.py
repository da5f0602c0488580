"""The same registry and index metadata on a real PostgreSQL 15 server."""

from __future__ import annotations

import threading

import numpy as np
from engine_fakes import HashingTextEmbedder
from sqlalchemy import inspect

from radclip.engine.db import make_engine
from radclip.engine.registry import PromptRegistry


def test_postgres_schema_versions_and_matrix(pg_url: str, text_embedder: HashingTextEmbedder) -> None:
    reg = PromptRegistry(pg_url, text_embedder)
    assert reg.engine.dialect.name == "postgresql"
    tables = set(inspect(reg.engine).get_table_names())
    assert {"conditions", "condition_versions", "prompts", "prompt_embeddings", "calibrations", "index_items",
            "alembic_version"} <= tables  # fmt: skip
    assert reg.register("hilar_mass", ["hilar mass", "enlarged hilum", "lobulated hilar opacity"], category="cardiomediastinal").version == 1
    assert reg.register("hilar_mass", ["hilar mass", "enlarged hilum"], category="cardiomediastinal").status == "updated"
    # A second process (new engine) sees the same state and the stored float32 embeddings.
    other = PromptRegistry(make_engine(pg_url), HashingTextEmbedder())
    assert [h["version"] for h in other.history("hilar_mass")] == [1, 2]
    names, mat = other.embeddings_matrix()
    np.testing.assert_allclose(mat, reg.embeddings_matrix()[1], atol=0)
    assert names == ["hilar_mass"] and other.embedder.calls == 0


def test_postgres_concurrent_identical_registration(pg_url: str) -> None:
    """Two writers racing on one name end with exactly one version (IntegrityError retried as 'unchanged')."""
    regs = [PromptRegistry(pg_url, HashingTextEmbedder(), migrate=(i == 0)) for i in range(2)]
    results, barrier = [], threading.Barrier(2)

    def go(r: PromptRegistry) -> None:
        barrier.wait()
        results.append(r.register("scoliosis", ["scoliosis", "curved spine", "spinal curvature"], category="osseous"))

    threads = [threading.Thread(target=go, args=(r,)) for r in regs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(r.status for r in results) == ["registered", "unchanged"]
    assert [h["version"] for h in regs[0].history("scoliosis")] == [1]
