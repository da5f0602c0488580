"""Fuzz the manifest reader: a validated DataFrame, or a ManifestError that names the rows/columns at fault."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import harness_contract as contract

from radclip.io.manifest import ManifestError, read_manifest

# A RAM-backed scratch file when there is one: the reader takes a path, and a disk write per input is slow.
_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_PATH = _DIR / f"radclip-fuzz-manifest-{os.getpid()}.csv"


def _target(data: bytes) -> object:
    _PATH.write_bytes(data)
    try:
        return read_manifest(_PATH)
    finally:
        _PATH.unlink(missing_ok=True)


def one_input(data: bytes) -> None:
    contract.check(_target, data, (ManifestError,))


if __name__ == "__main__":
    contract.run(one_input)
