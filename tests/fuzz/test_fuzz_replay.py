"""Replay every committed fuzz crasher through its harness's contract (fuzz/harness_contract.py), without atheris.

Each file in ``fuzz/regressions/<harness>/`` is a minimised input that broke the contract before
its fix (its name says what it raised). The harness must now give a result or a documented 4xx
error. The seeds that ``fuzz/make_seeds.py`` writes from built-in data are replayed too: they must
give results, not errors, or the fuzzer starts from nowhere.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
sys.path.insert(0, str(FUZZ))

HARNESSES = ("load_image", "fhir", "upload", "labeller", "manifest", "dicomweb")
REGRESSIONS = sorted(p for h in HARNESSES for p in (FUZZ / "regressions" / h).glob("*") if p.is_file())
OLD_DICOM_REGRESSIONS = sorted((ROOT / "tests" / "io" / "regressions").glob("*.dcm"))


def _harness(name: str):  # noqa: ANN202 - a module
    pytest.importorskip("pydicom")
    return importlib.import_module(f"fuzz_{name}")


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_crasher_now_keeps_the_contract(path: Path) -> None:
    _harness(path.parent.name).one_input(path.read_bytes())


@pytest.mark.parametrize("path", OLD_DICOM_REGRESSIONS, ids=lambda p: p.stem)
def test_the_mutation_run_crashers_keep_the_load_image_contract(path: Path) -> None:
    _harness("load_image").one_input(path.read_bytes())


def test_the_regression_corpus_covers_the_findings() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in REGRESSIONS}
    assert {"manifest/empty-emptydataerror", "dicomweb/qido-not-json-jsondecodeerror"} <= names


def test_a_contract_breach_is_reported_as_a_finding() -> None:
    """The replay can fail: an undocumented exception, or a documented one that is not a 4xx, is a Finding."""
    contract = _harness("load_image").contract

    def boom(_: bytes) -> None:
        raise KeyError("x")

    with pytest.raises(contract.Finding, match="undocumented builtins.KeyError"):
        contract.check(boom, b"", contract.input_errors())
    from radclip.service.problems import ProblemError

    def five_hundred(_: bytes) -> None:
        raise ProblemError(503, "Down", "down", "retry")

    with pytest.raises(contract.Finding, match="not a 4xx"):
        contract.check(five_hundred, b"", contract.input_errors())


def test_built_in_seeds_give_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = importlib.import_module("make_seeds")
    monkeypatch.setattr(seeds, "HERE", tmp_path)
    seeds.builtin_seeds()
    for path in sorted(tmp_path.glob("corpus/*/*")):
        harness = _harness(path.parent.name)
        target = harness._target
        if path.name in (
            "raw-dicom.bin",
            "wado.bin",
        ):  # truncated on purpose: a documented error is the result
            harness.one_input(path.read_bytes())
            continue
        assert target(path.read_bytes()) is not None, path.name
