"""The scheduled validation never retrains: nothing on its code path imports radclip.train (regulatory constraint)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ENTRY = ("radclip.commands.monitor_validate", "radclip.lifecycle.validation_schedule", "radclip.lifecycle.validation_gate",
         "radclip.lifecycle.validation_review")  # fmt: skip


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every radclip module a file imports, at the top or inside functions (the lazy imports a run would make)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("radclip")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("radclip"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return out


def reachable(entry: tuple[str, ...]) -> set[str]:
    """Modules reachable from ``entry`` through any import statement, with the packages that importing them runs."""
    seen: set[str] = set()
    todo = list(entry)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        path = _module_file(name)
        if path is not None:
            todo += sorted(_imports(path) - seen)
    return seen


def test_no_import_statement_on_the_scheduled_path_reaches_radclip_train() -> None:
    mods = reachable(ENTRY)
    assert (
        "radclip.eval.gate" in mods and "radclip.eval.report_inputs" in mods
    )  # the walk does follow lazy imports
    assert not [m for m in mods if m == "radclip.train" or m.startswith("radclip.train.")]


def test_the_walk_would_see_a_train_import() -> None:
    assert any(m.startswith("radclip.train") for m in reachable(("radclip.commands.train_triage",)))


def test_importing_the_scheduled_path_loads_no_training_module() -> None:
    code = ("import json, sys; from radclip.cli import build_parser; build_parser(); "
            + "; ".join(f"import {m}" for m in ENTRY)
            + "; import radclip.eval.report, radclip.eval.report_inputs, radclip.eval.gate; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('radclip'))))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "radclip.lifecycle.validation_schedule" in loaded
    assert not [m for m in loaded if m.startswith("radclip.train")]
