"""``radclip serve``: start the HTTP service with the configured (by default embedded) models."""

from __future__ import annotations

import argparse

HELP = "start the HTTP service (API v1, web UI) with the embedded default models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default RADCLIP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default RADCLIP_PORT or 8000)")


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from radclip.service.app import create_app
    from radclip.settings import SettingsError, load_settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"radclip serve: {exc}", file=__import__("sys").stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0
