"""Discordance heat maps through HTTP: production and a negated-head shadow, each version's CAM kept off the request path.

The negated head makes every CAM its own mirror (CAM' = -CAM, so the min-max normalised map is
1 - map): the two versions' stored maps must add up to white, and their overlays must differ.
Production's stored maps must equal the CAMs recomputed from the same image (the request's pass kept).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tests.ops.ops_helpers import SHIPPED, call, png, screen

SEEDS = range(8000, 8003)


def _png_pixels(body: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(body)))


def _url(key: str, ref: str, finding: str) -> str:
    return f"/api/v1/review/discordant/{quote(key, safe='')}/heatmap?version={quote(ref)}&finding={finding}"


def test_heatmaps_of_both_versions_are_kept_and_drawn(server: Any, discordant_head_weights: Path) -> None:
    from radclip.io.contract import to_contract_tensor
    from radclip.io.loader import load_image
    from radclip.lifecycle.review_store import version_maps

    ops = server.app.state.radclip_ops
    v2 = call(server, "POST", "/api/v1/models", json={"path": str(discordant_head_weights)}).json()[
        "changed"
    ][0]["version"]
    assert call(server, "POST", f"/api/v1/models/{SHIPPED}@{v2}/shadow").status_code == 200
    for seed in SEEDS:
        screen(server, seed)
    ops.shadow.drain()
    assert ops.shadow.outcomes["failed"] == 0
    listed = call(server, "GET", "/api/v1/review/discordant?limit=1000", "reader").json()["discordant"]
    keys = {f"sha256:{hashlib.sha256(png(s)).hexdigest()}": s for s in SEEDS}
    study = next(s for s in listed if s["study_key"] in keys)
    finding = next(f for f in study["findings"] if "model" in f["kinds"])
    refs = {c["role"]: c["ref"] for c in finding["calls"]}
    assert set(refs) == {"production", "shadow"}

    # stored maps: production's equal the CAMs of the same image (box-averaged, uint8); the shadow's are their mirror
    production = ops.lifecycle.deployment.production.runner
    stored = ops.shadow.review.load(study["study_key"])
    assert stored.refs == (refs["production"], refs["shadow"]) and stored.labels == tuple(production.labels)
    contract = to_contract_tensor(load_image(png(keys[study["study_key"]])).pixels, production.input_size)
    expect = version_maps(production, production.run(contract), ops.shadow.review.config.map_size)
    assert np.abs(stored.maps[0] / 255.0 - expect).max() <= 1.0 / 255 + 1e-4
    assert np.abs(stored.maps[0].astype(int) + stored.maps[1].astype(int) - 255).max() <= 2

    answers = {role: call(server, "GET", _url(study["study_key"], ref, finding["finding"]), "reader")
               for role, ref in refs.items()}  # fmt: skip
    for r in answers.values():
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and r.headers["cache-control"] == "no-store"
    prod_px, shadow_px = (_png_pixels(answers[k].content) for k in ("production", "shadow"))
    size = ops.shadow.review.config.thumb_size
    assert prod_px.shape == shadow_px.shape == (size, size, 3)
    assert np.abs(prod_px.astype(int) - shadow_px.astype(int)).mean() > 10  # mirrored heat: different colours

    # absent: unknown study, a version the study was not scored by, and a study production scored alone
    unknown = call(server, "GET", _url("sha256:" + "0" * 64, refs["production"], "Effusion"), "reader")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert "no heat maps kept" in unknown.json()["detail"]
    other = call(server, "GET", _url(study["study_key"], f"{SHIPPED}@0.0.0-none", "Effusion"), "reader")
    assert other.status_code == 404 and "kept: " in other.json()["detail"]
    bad = call(server, "GET", _url(study["study_key"], refs["production"], "Efusion"), "reader")
    assert bad.status_code == 422 and "Effusion" in bad.json()["detail"]
    assert call(server, "POST", f"/api/v1/models/{SHIPPED}/rollback").status_code == 200
    screen(server, 8100)
    ops.shadow.drain()
    alone = f"sha256:{hashlib.sha256(png(8100)).hexdigest()}"
    assert call(server, "GET", _url(alone, refs["production"], "Effusion"), "reader").status_code == 404
    # audited like the list, with the study as a keyed pseudonym (never the study key itself)
    access = server.app.state.radclip_access
    seen = [r for r in access.audit.rows() if r.action == "review-heatmap"]
    assert len(seen) == 6 and [r.outcome for r in seen[:2]] == [200, 200]
    assert (
        seen[0].study
        == access.pseudonymiser.pseudonym(study["study_key"], kind="study")
        != study["study_key"]
    )
    # the same role as the list: a key is needed
    import httpx

    assert (
        httpx.get(
            server.url + _url(study["study_key"], refs["production"], "Effusion"), timeout=60
        ).status_code
        == 401
    )


def test_the_heatmap_answer_is_documented(server: Any) -> None:
    doc = call(server, "GET", "/openapi.json").json()
    op = doc["paths"]["/api/v1/review/discordant/{study_id}/heatmap"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["image/png"]
    assert op["x-radclip-role"] == "reader" and op["x-radclip-audit"] == "review-heatmap"
    for code in ("401", "403", "404", "422", "429", "503"):
        assert list(op["responses"][code]["content"]) == ["application/problem+json"], code
