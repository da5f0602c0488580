"""Shared helpers for the access tests: an app with no models loaded (routes answer 4xx/503, never load weights)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def make_settings(home: Path, **overrides: Any) -> Any:
    from radclip.settings import load_settings

    return load_settings(home=home, index_on_start=False, seed_conditions=False, **overrides)


@contextmanager
def access_client(
    home: Path, client: tuple[str, int] = ("127.0.0.1", 50000), **overrides: Any
) -> Iterator[Any]:
    """A TestClient over ``create_app`` with an empty ServiceState; ``client`` is the peer address."""
    from fastapi.testclient import TestClient

    from radclip.service.app import create_app
    from radclip.service.state import ServiceState

    settings = make_settings(home, **overrides)
    app = create_app(settings, state=ServiceState(settings=settings))
    with TestClient(app, client=client) as c:
        yield c


def store(client: Any) -> Any:
    return client.app.state.radclip_access.keys
