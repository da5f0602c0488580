"""``radclip serve``: start the HTTP service with the configured (by default embedded) models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "start the HTTP service (API v1, web UI) with the embedded default models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default RADCLIP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default RADCLIP_PORT or 8000)")
    parser.add_argument(
        "--ssl-certfile", type=Path, default=None, help="PEM certificate (chain): serve HTTPS"
    )
    parser.add_argument("--ssl-keyfile", type=Path, default=None, help="PEM private key of --ssl-certfile")
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="deploy on the Ray cluster at ADDRESS (e.g. 10.0.0.5:6380 or auto) with Ray Serve, then return; "
                             "--host/--port are the Serve proxy's (docs/scaling.md)")  # fmt: skip
    parser.add_argument("--replicas", type=int, default=2, help="with --ray: reader replicas (default 2)")
    parser.add_argument("--max-replicas", type=int, default=0,
                        help="with --ray: autoscale between 1 and this many reader replicas (default 0: fixed --replicas)")  # fmt: skip


def tls_options(certfile: Path | None, keyfile: Path | None) -> dict[str, str]:
    """uvicorn's ssl_* arguments; raises ValueError saying which file is missing."""
    if (certfile is None) != (keyfile is None):
        raise ValueError(
            "--ssl-certfile and --ssl-keyfile go together; give both (or neither for plain HTTP)"
        )
    if certfile is None or keyfile is None:
        return {}
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not path.is_file():
            raise ValueError(f"{flag} {path}: no such file")
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from radclip.engine import db
    from radclip.engine.keys import KeyStore
    from radclip.service.app import create_app
    from radclip.service.auth import AccessConfigError, check_exposure
    from radclip.settings import SettingsError, load_settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
        tls = tls_options(args.ssl_certfile, args.ssl_keyfile)
    except (SettingsError, ValueError) as exc:
        print(f"radclip serve: {exc}", file=sys.stderr)
        return 2
    if args.ray is not None:
        return _run_on_ray(args, settings, overrides)
    engine = db.make_engine(settings.resolved_database_url)
    try:
        db.migrate(engine)
        check_exposure(settings, KeyStore(engine))
    except AccessConfigError as exc:
        print(f"radclip serve: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.malloc_tuning:  # before uvicorn starts its threads: see runtime/allocator.py
        from radclip.runtime.allocator import MallocConfig, tune_malloc

        malloc = tune_malloc(MallocConfig(arena_max=settings.malloc_arena_max or None))
        logging.getLogger("radclip.serve").info("malloc: %s", malloc.to_dict())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        **tls,
    )  # type: ignore[arg-type]
    return 0


def _run_on_ray(args: argparse.Namespace, settings: object, overrides: dict[str, object]) -> int:
    """Deploy ``create_app`` on Ray Serve (radclip.service.ray_deployment); the app stays up after we return."""
    if args.ssl_certfile or args.ssl_keyfile:
        print("radclip serve: --ray serves plain HTTP from the Serve proxy; terminate TLS at the load balancer", file=sys.stderr)
        return 2
    from radclip.service.ray_deployment import RayServeConfig, deploy

    try:
        config = RayServeConfig(replicas=args.replicas, min_replicas=1 if args.max_replicas else 0, max_replicas=args.max_replicas,
                                http_host=settings.host, http_port=settings.port)  # type: ignore[attr-defined]  # fmt: skip
    except ValueError as exc:
        print(f"radclip serve: {exc}", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401
    except ImportError:
        print("radclip serve --ray: Ray is not installed; pip install 'ray[serve]>=2.60'", file=sys.stderr)
        return 2
    summary = deploy(args.ray, {k: str(v) for k, v in overrides.items()}, config)
    print(f"radclip on Ray Serve at {summary['url']} ({config.replicas} reader replicas + 1 writer); "
          f"index {summary.get('index')}; stop it with `serve shutdown -a http://HEAD:8265` (the dashboard address)")
    return 0
