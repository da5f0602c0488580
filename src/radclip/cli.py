"""The ``radclip`` command. Thin: parses arguments and delegates to ``radclip.commands.*``.

Sub-command modules are imported lazily, so ``radclip --help`` stays fast and
``radclip inspect`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

# (command path, module under radclip.commands). Groups ("train", "eval", ...) are implied.
COMMANDS: list[tuple[tuple[str, ...], str]] = [
    (("inspect",), "inspect"),
    (("eda",), "eda"),
    (("triage",), "triage"),
    (("explain",), "explain"),
    (("train", "triage"), "train_triage"),
    (("train", "clip"), "train_clip"),
    (("eval", "triage"), "eval_triage"),
    (("eval", "zeroshot"), "eval_zeroshot"),
    (("eval", "labeller"), "eval_labeller"),
    (("eval", "retrieval"), "eval_retrieval"),
    (("eval", "negation"), "eval_negation"),
    (("calibrate", "triage"), "calibrate_triage"),
    (("conditions",), "conditions"),
    (("index",), "index"),
    (("serve",), "serve"),
    (("export",), "export"),
    (("report",), "report"),
    (("validate",), "validate"),
    (("pacs",), "pacs"),
    (("keys",), "keys"),
    (("audit",), "audit"),
    (("models",), "models"),
    (("monitor", "drift-reference"), "monitor_drift"),
    (("monitor", "validate-schedule"), "monitor_validate"),
]

GROUP_HELP = {
    "train": "train the shipped models (triage network, image-text model)",
    "eval": "evaluate a model on a manifest and write a JSON report",
    "calibrate": "refit a shipped model's calibration on the validation split",
    "monitor": "monitoring: the embedding-drift reference shipped with a model; the scheduled validation (concept drift)",
}


def _load(module: str) -> ModuleType | None:
    name = f"radclip.commands.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:  # not written yet: leave it out of the CLI
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    from radclip import __version__

    parser = argparse.ArgumentParser(prog="radclip", description="Chest X-ray triage, explanation, zero-shot screening and case retrieval.")
    parser.add_argument("--version", action="version", version=f"radclip {__version__}")
    root = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module_name in COMMANDS:
        module = _load(module_name)
        if module is None:
            continue
        subparsers = root
        if len(path) > 1:
            group = path[0]
            if group not in groups:
                gp = root.add_parser(group, help=GROUP_HELP.get(group, ""), description=GROUP_HELP.get(group, ""))
                groups[group] = gp.add_subparsers(dest=f"{group}_command", metavar="WHAT", required=True)
            subparsers = groups[group]
        sub = subparsers.add_parser(path[-1], help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
