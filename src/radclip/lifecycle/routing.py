"""The per-study routing decision: a stable hash of the study puts it in or out of the canary's share.

Kept apart from loading so the rule is one pure function: the same study key always lands in the
same bucket, whatever process, restart or request order (sha256, not Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def bucket(study_key: str) -> float:
    """A study's position in [0, 100): the first 8 bytes of sha256(key), scaled."""
    head = int.from_bytes(hashlib.sha256(study_key.encode()).digest()[:8], "big")
    return head / 2**64 * 100.0


def study_key(study_instance_uid: str | None, upload: bytes) -> str:
    """The StudyInstanceUID when the upload carries one, else the upload's digest (so one file, one answer)."""
    uid = (study_instance_uid or "").strip()
    return f"uid:{uid}" if uid else f"sha256:{hashlib.sha256(upload).hexdigest()}"


@dataclass(frozen=True)
class Served:
    """One loaded version with its place in the deployment."""

    ref: str  # name@version
    stage: str  # production | canary | shadow
    runner: Any  # a TriageRunner (or its ONNX subclass)


@dataclass(frozen=True)
class Choice:
    """What one request uses: the version that answers, and the shadow to run off the request path (or None)."""

    answer: Served
    shadow: Served | None
    study_key: str
    production: Served | None = (
        None  # when the canary answers, production runs off the path too (paired live AUC)
    )


@dataclass(frozen=True)
class Deployment:
    """An immutable snapshot; the lifecycle swaps whole snapshots, so a request never sees half a change."""

    production: Served
    canary: Served | None = None
    canary_percent: float = 0.0
    shadow: Served | None = None
    token: int = 0  # the registry state it reflects
    errors: dict[str, str] = field(default_factory=dict)  # versions that failed to load, with the reason

    def choose(self, key: str) -> Choice:
        in_canary = self.canary is not None and bucket(key) < self.canary_percent
        answer = self.canary if in_canary else self.production
        return Choice(answer, self.shadow, key, self.production)  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "production": self.production.ref,
            "token": self.token,
            "errors": dict(self.errors),
        }
        if self.canary is not None:
            out["canary"] = {"ref": self.canary.ref, "percent": self.canary_percent}
        if self.shadow is not None:
            out["shadow"] = self.shadow.ref
        return out
