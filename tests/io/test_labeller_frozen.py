"""The labeller's rules are frozen: any change to a rule, cue or window changes the fingerprint."""

from __future__ import annotations

import re

import pytest

from radclip.io import labeller
from radclip.io.labeller import FROZEN_RULES_SHA256, Rule, rules_fingerprint


def test_rules_match_the_frozen_fingerprint() -> None:
    assert rules_fingerprint() == FROZEN_RULES_SHA256, (
        "labeller rules changed: the held-out numbers in docs/data.md no longer describe them; "
        "re-measure on a split the change was not tuned on before updating FROZEN_RULES_SHA256"
    )


def test_a_changed_rule_or_window_changes_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        labeller, "RULES", [*labeller.RULES, Rule("Nodule", re.compile(r"\bgranuloma\b"), 1.0)]
    )
    assert rules_fingerprint() != FROZEN_RULES_SHA256
    monkeypatch.undo()
    monkeypatch.setattr(labeller, "PRE_WINDOW", labeller.PRE_WINDOW + 1)
    assert rules_fingerprint() != FROZEN_RULES_SHA256
