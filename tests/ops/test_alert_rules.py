"""Prometheus alert rules: promtool unit tests for every rule, and the Grafana dashboard's structure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "radclip-rules.yml"
# The spec's monitoring rows and their thresholds, as the rules must state them.
SPEC_THRESHOLDS = {"RadclipImageEncodingSlow": "> 0.4", "RadclipTopSimilarityShift": "> 0.05",
                   "RadclipEmbeddingDrift": "> 0.10", "RadclipLiveAucDrop": "> 0.03",
                   "RadclipTextCacheHitRateLow": "< 0.95"}  # fmt: skip


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_every_spec_row_has_a_rule_with_its_threshold_and_a_runbook() -> None:
    alerts = _alerts()
    for name, threshold in SPEC_THRESHOLDS.items():
        assert threshold in " ".join(alerts[name]["expr"].split()), name
    ops = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text().lower()
    for name, rule in alerts.items():
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {name.lower()}" in ops, (
            f"docs/operations.md has no runbook section for {name} (#{anchor})"
        )


def test_promtool_unit_tests_cover_every_rule() -> None:
    if shutil.which("promtool") is None:  # install once (Debian prometheus), skip only if that fails
        root = Path(__file__).resolve().parents[2]
        try:
            done = subprocess.run([str(root / "scripts" / "ensure_apt.sh"), "prometheus"], capture_output=True,
                                  text=True, timeout=400).stderr.strip()[-200:]  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = f"{type(exc).__name__}: {exc}"
        if shutil.which("promtool") is None:
            pytest.skip(f"promtool (Debian prometheus) is not installed and could not be: {done}")
    promtool = shutil.which("promtool")
    assert promtool is not None
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "radclip-rules.test.yml").read_text()))
    assert tested == set(_alerts()), f"rules without a promtool test: {set(_alerts()) - tested}"
    out = subprocess.run(
        [promtool, "check", "rules", RULES.name], cwd=RULES.parent, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(
        [promtool, "test", "rules", "radclip-rules.test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_grafana_dashboard_structure() -> None:
    dash = json.loads((DEPLOY / "grafana" / "radclip-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("radclip_inference_seconds_bucket", "radclip_top_finding_similarity_sum", "radclip_embedding_drift_cosine",
                   "radclip_live_auc", "radclip_text_cache_hit_rate", "radclip_auto_rollback",
                   "radclip_validate_exit_code", "radclip_validate_last_compared_timestamp_seconds"):  # fmt: skip
        assert metric in exprs, f"no panel shows {metric}"
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0 and p["targets"][0]["refId"] == "A"
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(cells) == len(panels)  # no two panels on top of each other
