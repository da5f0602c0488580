"""``radclip keys``: create, list and revoke the service's API keys (stored as salted scrypt hashes)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "manage the service's API keys: create (prints the key once), list, revoke"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (default RADCLIP_DATABASE_URL or sqlite under RADCLIP_HOME)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key and print it (it cannot be shown again)")
    create.add_argument(
        "--name", required=True, help="who or what holds the key, e.g. reading-room-3 or pacs-bridge"
    )
    create.add_argument(
        "--role",
        required=True,
        choices=("reader", "ingest", "admin"),
        help="reader: screen/triage/retrieve/view; ingest: add studies; admin: everything",
    )
    create.add_argument(
        "--expires", type=float, default=None, metavar="DAYS", help="expire after DAYS days (default: never)"
    )
    ls = sub.add_parser(
        "list", help="list keys: name, role, created, expires, last used, status (never the key)"
    )
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    revoke = sub.add_parser("revoke", help="revoke a key; the service refuses it from the next request")
    revoke.add_argument("name")


def open_store(database: str | None) -> Any:
    from radclip.engine import db
    from radclip.engine.keys import KeyStore
    from radclip.settings import get_settings

    engine = db.make_engine(database or get_settings().resolved_database_url)
    db.migrate(engine)
    return KeyStore(engine)


def _when(t: Any) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else "-"


def run(args: argparse.Namespace) -> int:
    from radclip.engine.db import utcnow
    from radclip.engine.keys import KeyRequestError

    store = open_store(args.database)
    try:
        if args.action == "create":
            try:
                key = store.create(args.name, args.role, args.expires)
            except KeyRequestError as exc:
                print(f"radclip keys create: {exc}", file=sys.stderr)
                return 2
            print(key)
            print(
                f"# key {args.name!r} (role {args.role}) created; it is shown only this once. Send it as X-API-Key.",
                file=sys.stderr,
            )
            return 0
        if args.action == "revoke":
            if not store.revoke(args.name):
                print(
                    f"radclip keys revoke: no active key named {args.name!r} (see `radclip keys list`)",
                    file=sys.stderr,
                )
                return 1
            print(f"revoked {args.name!r}; the service refuses it from the next request")
            return 0
        now = utcnow()
        rows = [{"name": k.name, "role": k.role, "created": _when(k.created_at), "expires": _when(k.expires_at),
                 "last_used": _when(k.last_used_at), "status": k.status(now)} for k in store.list()]  # fmt: skip
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'name':24} {'role':7} {'created':21} {'expires':21} {'last used':21} status")
            for r in rows:
                print(
                    f"{r['name']:24} {r['role']:7} {r['created']:21} {r['expires']:21} {r['last_used']:21} {r['status']}"
                )
        return 0
    finally:
        store.engine.dispose()
