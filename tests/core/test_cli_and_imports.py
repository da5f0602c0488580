"""The package imports light, and the CLI lists its commands."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "pydicom", "sklearn", "fastapi", "transformers", "timm", "open_clip", "faiss", "matplotlib")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, json; {code}; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_radclip_imports_nothing_heavy() -> None:
    loaded = _modules_after("import radclip")
    assert not [m for m in HEAVY if m in loaded]


def test_cli_help_imports_nothing_heavy() -> None:
    loaded = _modules_after("from radclip.cli import build_parser; build_parser().format_help()")
    assert not [m for m in HEAVY if m in loaded]


def test_radclip_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "radclip.cli", "--help"], capture_output=True, text=True, check=True)
    assert "inspect" in out.stdout
    assert "serve" in out.stdout


def test_no_command_prints_help_and_exits_2(capsys) -> None:  # type: ignore[no-untyped-def]
    from radclip.cli import main

    assert main([]) == 2
    assert "usage: radclip" in capsys.readouterr().out
