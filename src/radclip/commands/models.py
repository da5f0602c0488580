"""``radclip models``: list, register and move model versions between stages (shadow, canary, production, rollback)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

HELP = (
    "model versions and their stages: list | register PATH | shadow | canary --percent P | promote | rollback"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (default RADCLIP_DATABASE_URL or sqlite under RADCLIP_HOME)",
    )
    parser.add_argument(
        "--actor", default=None, help="who makes the change, for the stage history (default: the OS user)"
    )
    parser.add_argument("--reason", default="", help="why, for the stage history")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every version with its stage (and canary percent)")
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.add_argument("--history", action="store_true", help="print the stage history (who, when, why) instead")
    reg = sub.add_parser("register", help="record a .safetensors (its .card.json beside it) as a candidate")
    reg.add_argument("path")
    reg.add_argument(
        "--production", action="store_true", help="register as production (only when the name has none)"
    )
    sh = sub.add_parser("shadow", help="run NAME@VER beside production on every request; it answers nothing")
    sh.add_argument("ref", metavar="NAME@VER")
    ca = sub.add_parser("canary", help="let NAME@VER answer P%% of studies (stable per study)")
    ca.add_argument("ref", metavar="NAME@VER")
    ca.add_argument("--percent", type=float, required=True, help="share of studies, e.g. 10, 25, 50")
    pr = sub.add_parser("promote", help="make NAME@VER (or NAME's canary, else its shadow) production")
    pr.add_argument("ref", metavar="NAME[@VER]")
    rb = sub.add_parser(
        "rollback", help="retire NAME's canary and shadow, or restore its previous production"
    )
    rb.add_argument("name", metavar="NAME")


def open_stages(database: str | None) -> Any:
    from radclip.engine import db
    from radclip.engine.model_stages import ModelStages
    from radclip.settings import get_settings

    engine = db.make_engine(database or get_settings().resolved_database_url)
    db.migrate(engine)
    return ModelStages(engine)


def _print_versions(rows: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    print(f"{'model':44} {'stage':11} {'canary':7} {'sha256':13} registered")
    for r in rows:
        pct = f"{r.canary_percent:g}%" if r.canary_percent is not None else "-"
        print(
            f"{r.ref:44} {r.stage:11} {pct:7} {r.sha256[:12]:13} {r.registered_at:%Y-%m-%d %H:%M} by {r.registered_by}"
        )


def _act(stages: Any, args: argparse.Namespace, actor: str) -> list[Any]:
    if args.action == "register":
        return [stages.register(args.path, actor, "production" if args.production else "candidate")]
    if args.action == "shadow":
        return [stages.shadow(args.ref, actor, args.reason)]
    if args.action == "canary":
        return [stages.canary(args.ref, args.percent, actor, args.reason)]
    if args.action == "promote":
        return [stages.promote(args.ref, actor, args.reason)]
    return list(stages.rollback(args.name, actor, args.reason))


def run(args: argparse.Namespace) -> int:
    from radclip.engine.model_stages import StageError

    stages = open_stages(args.database)
    try:
        if args.action == "list":
            if args.history:
                for e in stages.history():
                    pct = f" {e.canary_percent:g}%" if e.canary_percent is not None else ""
                    print(
                        f"{e.at:%Y-%m-%d %H:%M:%S} {e.ref:40} {e.from_stage or '-':>10} -> {e.to_stage}{pct}  by {e.actor}: {e.reason}"
                    )
            else:
                _print_versions(stages.list(), args.json)
            return 0
        try:
            changed = _act(stages, args, args.actor or getpass.getuser())
        except StageError as exc:
            print(f"radclip models {args.action}: {exc}", file=sys.stderr)
            return 2
        _print_versions(changed, False)
        print("# a running service picks this up within a second; no restart needed", file=sys.stderr)
        return 0
    finally:
        stages.engine.dispose()
