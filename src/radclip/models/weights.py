"""Weight files: safetensors save/load with sha256 verification. Never pickles.

``torch.load`` is used only for third-party ``.pth`` files, always with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"


class WeightsError(RuntimeError):
    """A weight file is missing, corrupt, or does not match its card."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """Write ``state`` as safetensors (contiguous CPU copies) and return the file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(tensors, str(path), metadata=metadata)
    return sha256_file(path)


def load_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file; refuse it if its sha256 differs from ``expected_sha256``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; train it (see docs/training.md) or point the setting at an existing file")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise WeightsError(
                f"weights file {path} has sha256 {actual[:12]}…, its card says {expected_sha256[:12]}…; "
                "the file is corrupt or the card is stale: re-download or re-train, then rewrite the card"
            )
    return load_file(str(path))


def load_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a third-party ``.pth``/``.pt`` state dict safely (``weights_only=True``)."""
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return obj
