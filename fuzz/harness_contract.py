"""The harness contract shared by every fuzz target: a result, or a documented radclip error that maps to a 4xx."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # harnesses run as plain scripts: make the package importable
    sys.path.insert(0, str(ROOT / "src"))


class Finding(AssertionError):
    """An input broke the contract: the exception it raised is not one radclip documents as a 4xx."""


def input_errors() -> tuple[type[BaseException], ...]:
    """The exception types the service maps to a 4xx (service.problems and the routers' handlers)."""
    from radclip.io.errors import MissingDependencyError, RadclipInputError
    from radclip.service.problems import ProblemError

    return (RadclipInputError, MissingDependencyError, ProblemError)


def is_4xx(exc: BaseException) -> bool:
    """Whether ``exc`` is answered with a 4xx (a ``ProblemError`` carries its own status)."""
    status = getattr(exc, "status", 400)
    return isinstance(status, int) and 400 <= status < 500


def check(target: Callable[[bytes], object], data: bytes, allowed: tuple[type[BaseException], ...]) -> None:
    """Run ``target`` on ``data``; raise :class:`Finding` unless it returns or raises an allowed 4xx type."""
    try:
        target(data)
    except allowed as exc:
        if not is_4xx(exc):
            raise Finding(
                f"{type(exc).__name__} maps to HTTP {getattr(exc, 'status', '?')}, not a 4xx: {exc}"
            ) from exc
    except Finding:  # the harness's own check of the result: report it as it is
        raise
    except BaseException as exc:  # a Rust panic is a BaseException: it is a finding too
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise Finding(f"undocumented {type(exc).__module__}.{type(exc).__name__}: {str(exc)[:300]}") from exc


def run(one_input: Callable[[bytes], None]) -> None:
    """Hand ``one_input`` to atheris/libFuzzer with the command line's flags (see scripts/fuzz.sh)."""
    import atheris

    warnings.simplefilter("ignore")  # parsers warn (and multipart logs) on nearly every mutated input:
    logging.disable(logging.CRITICAL)  # that output would drown libFuzzer's stats and slow each run
    atheris.instrument_all()  # after the harness imported its targets: coverage of radclip and its parsers
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
