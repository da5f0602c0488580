"""``radclip audit``: verify the access trail's hash chain, and export it for a privacy officer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "check the access audit trail's hash chain (verify) or export it as CSV/JSONL (export)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (default RADCLIP_DATABASE_URL or sqlite under RADCLIP_HOME)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser(
        "verify", help="recompute every entry's hash; exit 1 and name the first broken entry on tampering"
    )
    exp = sub.add_parser("export", help="write the entries in [--since, --until) as CSV or JSONL")
    exp.add_argument("--since", default=None, help="UTC date or time, e.g. 2026-12-01 or 2026-12-01T08:00")
    exp.add_argument("--until", default=None, help="UTC date or time (exclusive)")
    exp.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    exp.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")


def _bound(text: str | None) -> str | None:
    """A date/time prefix compared as text against the ISO 8601 UTC stamps (``2026-12-01`` < ``2026-12-01T...``)."""
    import datetime as dt

    if text is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(
            f"radclip audit export: {text!r} is not a date or time; use e.g. 2026-12-01 or 2026-12-01T08:00"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(args: argparse.Namespace) -> int:
    from radclip.engine import db
    from radclip.engine.audit import AuditTrail
    from radclip.settings import get_settings

    engine = db.make_engine(args.database or get_settings().resolved_database_url)
    try:
        db.migrate(engine)
        trail = AuditTrail(engine)
        if args.action == "verify":
            result = trail.verify()
            if not result.ok:
                print(
                    f"audit trail BROKEN after {result.entries} good entries: {result.problem}",
                    file=sys.stderr,
                )
                return 1
            print(f"audit trail intact: {result.entries} entries; head {result.head}")
            return 0
        text = trail.export(args.format, _bound(args.since), _bound(args.until))
        if args.out is None:
            sys.stdout.write(text)
        else:
            args.out.write_text(text)
        return 0
    finally:
        engine.dispose()
