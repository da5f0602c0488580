"""The model registry with stages: versions keyed by name, version and sha256, their stage and its audited history.

A version moves ``candidate -> shadow -> canary (P%) -> production`` and leaves by ``retired``. Per model
name there is at most one version in each of shadow, canary and production. Every change appends a
``model_stage_events`` row saying who, when, from which stage to which and why; the newest event id is
the registry's state token, which the serving lifecycle polls to pick up changes without a restart.
Engine floor: the ``radclip models`` command and the admin API both use it and it needs only the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import DateTime, Float, ForeignKey, String, Text, UniqueConstraint, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from radclip.engine import db

STAGES = ("candidate", "shadow", "canary", "production", "retired")
SERVING = ("shadow", "canary", "production")  # at most one version of a name in each
# Which stages a version may move to from each stage; "retired" is reached only by rollback.
ALLOWED = {
    "candidate": ("shadow", "canary", "production"),
    "shadow": ("canary", "production"),
    "canary": ("canary", "production"),  # canary -> canary changes the percentage (10 -> 25 -> 50)
    "production": (),
    "retired": ("shadow", "canary", "production"),  # a retired version may be brought back on purpose
}


class ModelVersion(db.Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"), UniqueConstraint("name", "sha256"))
    id: Mapped[int] = mapped_column(db.BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)  # the weights file (its card lies beside it)
    stage: Mapped[str] = mapped_column(String(16))
    canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    registered_by: Mapped[str] = mapped_column(String(128))
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ModelStageEvent(db.Base):
    __tablename__ = "model_stage_events"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids order the history and are the state token
    id: Mapped[int] = mapped_column(db.BigId, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16))
    canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class StageError(ValueError):
    """A registry request named an unknown version or asked for a move its stage does not allow."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    sha256: str
    task: str
    path: str
    stage: str
    canary_percent: float | None
    registered_by: str
    registered_at: dt.datetime

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "task": self.task, "path": self.path,
                "stage": self.stage, "canary_percent": self.canary_percent, "registered_by": self.registered_by,
                "registered_at": _aware(self.registered_at).isoformat()}  # fmt: skip


@dataclass(frozen=True)
class StageEvent:
    ref: str
    from_stage: str | None
    to_stage: str
    canary_percent: float | None
    actor: str
    reason: str
    at: dt.datetime

    def to_dict(self) -> dict[str, object]:
        return {"ref": self.ref, "from": self.from_stage, "to": self.to_stage, "canary_percent": self.canary_percent,
                "actor": self.actor, "reason": self.reason, "at": _aware(self.at).isoformat()}  # fmt: skip


def _aware(t: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes for timezone=True columns; they were written in UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name@version`` -> (name, version); a bare ``name`` -> (name, None)."""
    name, _, version = ref.partition("@")
    if not name.strip():
        raise StageError(
            f"model reference {ref!r} has no name; write NAME@VERSION, e.g. radclip-mobilenetv2-nih@1.2"
        )
    return name.strip(), (version.strip() or None)


def read_card(path: str | Path) -> tuple[Path, dict[str, object]]:
    """The weights file and its card's JSON for a ``.safetensors`` or ``.card.json`` path."""
    if "\x00" in str(path):
        raise StageError("the model path contains a NUL byte; pass the path of a .safetensors or .card.json file")
    try:
        p = Path(path).expanduser().resolve()
    except RuntimeError:  # "~someone/..." with no such user: found by schemathesis (a 500 before)
        raise StageError(f"{str(path)[:200]!r}: '~' names no home directory here; pass an absolute path") from None
    if p.name.endswith(".card.json"):
        card_path = p
    elif p.suffix == ".safetensors":
        card_path = p.with_name(p.name.removesuffix(".safetensors") + ".card.json")
    else:
        raise StageError(
            f"{str(path)!r} is neither a .safetensors weights file nor a .card.json; pass one of them"
        )
    if not card_path.is_file():
        raise StageError(f"no model card at {card_path}; every weights file needs its .card.json beside it")
    card = json.loads(card_path.read_text())
    weights = card_path.with_name(str(card.get("weights_file") or ""))
    if not card.get("weights_file") or not weights.is_file():
        raise StageError(
            f"the card {card_path} names weights file {card.get('weights_file')!r}, which does not exist beside it"
        )
    return weights, card


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _info(r: ModelVersion) -> VersionInfo:
    return VersionInfo(
        r.name,
        r.version,
        r.sha256,
        r.task,
        r.path,
        r.stage,
        r.canary_percent,
        r.registered_by,
        r.registered_at,
    )


class ModelStages:
    """Register versions and move them between stages; every move is one transaction and one history row."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = db.session_factory(engine)

    # -- reading --------------------------------------------------------------------------
    def list(self, name: str | None = None) -> list[VersionInfo]:
        q = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.registered_at, ModelVersion.id)
        if name is not None:
            q = q.where(ModelVersion.name == name)
        with self._session() as s:
            return [_info(r) for r in s.scalars(q).all()]

    def get(self, ref: str) -> VersionInfo:
        with self._session() as s:
            return _info(self._row(s, ref))

    def history(self, name: str | None = None) -> list[StageEvent]:
        q = select(ModelStageEvent, ModelVersion).join(
            ModelVersion, ModelVersion.id == ModelStageEvent.model_version_id
        )
        if name is not None:
            q = q.where(ModelVersion.name == name)
        with self._session() as s:
            rows = s.execute(q.order_by(ModelStageEvent.id)).all()
        return [StageEvent(f"{v.name}@{v.version}", e.from_stage, e.to_stage, e.canary_percent, e.actor, e.reason, e.at)
                for e, v in rows]  # fmt: skip

    def state_token(self) -> int:
        """The newest history id: it changes exactly when some stage changes."""
        with self._session() as s:
            return int(s.scalar(select(func.max(ModelStageEvent.id))) or 0)

    def serving(self, name: str) -> dict[str, VersionInfo]:
        """The versions of ``name`` that serve or shadow: ``{"production": ..., "canary": ..., "shadow": ...}``."""
        return {v.stage: v for v in self.list(name) if v.stage in SERVING}

    # -- writing --------------------------------------------------------------------------
    def register(self, path: str | Path, actor: str, stage: str = "candidate") -> VersionInfo:
        """Record the weights at ``path`` (card beside them) as a new version; the same file twice is refused."""
        if stage not in ("candidate", "production"):
            raise StageError(
                f"a version is registered as candidate (or production for the first one), not {stage!r}"
            )
        weights, card = read_card(path)
        name, version, sha = str(card.get("name") or ""), str(card.get("version") or ""), _sha256(weights)
        if not name or not version:
            raise StageError(f"the card of {weights} has no name or version; set both before registering")
        if card.get("weights_sha256") and card["weights_sha256"] != sha:
            raise StageError(f"{weights} has sha256 {sha[:12]}… but its card says {str(card['weights_sha256'])[:12]}…; "
                             "re-save the card with the weights' checksum")  # fmt: skip
        with self._session() as s, s.begin():
            clash = s.scalars(select(ModelVersion).where(ModelVersion.name == name,
                              (ModelVersion.version == version) | (ModelVersion.sha256 == sha))).first()  # fmt: skip
            if clash is not None:
                raise StageError(f"{name}@{clash.version} (sha256 {clash.sha256[:12]}…) is already registered; "
                                 "bump the card's version when the weights change")  # fmt: skip
            if stage == "production" and self._holder(s, name, "production") is not None:
                raise StageError(
                    f"{name} already has a production version; register as candidate and promote it"
                )
            row = ModelVersion(name=name, version=version, sha256=sha, task=str(card.get("task") or ""), path=str(weights),
                               stage=stage, registered_by=actor, registered_at=db.utcnow())  # fmt: skip
            s.add(row)
            s.flush()
            self._event(s, row, None, stage, None, actor, "registered")
            return _info(row)

    def shadow(self, ref: str, actor: str, reason: str = "") -> VersionInfo:
        return self._move(
            ref, "shadow", None, actor, reason or "shadow: runs beside production, answers nothing"
        )

    def canary(self, ref: str, percent: float, actor: str, reason: str = "") -> VersionInfo:
        if not 0 < percent < 100:
            raise StageError(
                f"canary percent must be above 0 and below 100, not {percent}; use `promote` for 100"
            )
        return self._move(
            ref, "canary", float(percent), actor, reason or f"canary at {percent:g}% of studies"
        )

    def promote(self, ref: str, actor: str, reason: str = "") -> VersionInfo:
        """``name@ver`` -> production, or a bare ``name``: its canary (else its shadow). The old production retires."""
        name, version = parse_ref(ref)
        if version is None:
            serving = self.serving(name)
            pick = serving.get("canary") or serving.get("shadow")
            if pick is None:
                raise StageError(
                    f"{name} has no canary or shadow version to promote; name one as {name}@VERSION"
                )
            ref = pick.ref
        return self._move(ref, "production", None, actor, reason or "promoted to production")

    def rollback(self, name: str, actor: str, reason: str = "") -> list[VersionInfo]:
        """Retire ``name``'s canary and shadow; with neither, restore the production before the current one."""
        name, _ = parse_ref(name)
        with self._session() as s, s.begin():
            trial = [r for st in ("canary", "shadow") if (r := self._holder(s, name, st)) is not None]
            if trial:
                for r in trial:
                    self._set(s, r, "retired", None, actor, reason or f"rolled back from {r.stage}")
                return [_info(r) for r in trial]
            current = self._holder(s, name, "production")
            previous = self._previous_production(s, name, current)
            if current is None or previous is None:
                raise StageError(
                    f"{name} has no canary, shadow or earlier production version to roll back to"
                )
            self._set(
                s, current, "retired", None, actor, reason or "rolled back: previous production restored"
            )
            self._set(s, previous, "production", None, actor, reason or "restored by rollback")
            return [_info(current), _info(previous)]

    def retire(self, ref: str, actor: str, reason: str) -> VersionInfo:
        """Retire one serving version (the automatic rollback of a canary or shadow that got worse)."""
        with self._session() as s, s.begin():
            row = self._row(s, ref)
            if row.stage not in ("shadow", "canary"):
                raise StageError(f"{ref} is {row.stage}; only a shadow or canary version is retired this way")
            self._set(s, row, "retired", None, actor, reason)
            return _info(row)

    # -- internals ------------------------------------------------------------------------
    def _move(self, ref: str, to: str, percent: float | None, actor: str, reason: str) -> VersionInfo:
        with self._session() as s, s.begin():
            row = self._row(s, ref)
            if to not in ALLOWED[row.stage]:
                raise StageError(f"{ref} is {row.stage}; it cannot move to {to} (from {row.stage}: "
                                 f"{', '.join(ALLOWED[row.stage]) or 'only rollback'})")  # fmt: skip
            holder = self._holder(s, row.name, to)
            if holder is not None and holder.id != row.id:  # the one slot per stage is taken
                self._set(s, holder, "retired", None, actor, f"replaced by {ref} as {to}")
            self._set(s, row, to, percent, actor, reason)
            return _info(row)

    def _set(
        self, s: object, row: ModelVersion, to: str, percent: float | None, actor: str, reason: str
    ) -> None:
        before = row.stage
        row.stage, row.canary_percent = to, (percent if to == "canary" else None)
        s.flush()  # type: ignore[attr-defined]
        self._event(s, row, before, to, row.canary_percent, actor, reason)

    @staticmethod
    def _event(
        s: object,
        row: ModelVersion,
        before: str | None,
        to: str,
        percent: float | None,
        actor: str,
        reason: str,
    ) -> None:
        s.add(ModelStageEvent(model_version_id=row.id, from_stage=before, to_stage=to, canary_percent=percent,  # type: ignore[attr-defined]
                              actor=actor, reason=reason, at=db.utcnow()))  # fmt: skip

    @staticmethod
    def _holder(s: object, name: str, stage: str) -> ModelVersion | None:
        q = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.stage == stage)
        return s.scalars(q).first()  # type: ignore[attr-defined,no-any-return]

    @staticmethod
    def _previous_production(s: object, name: str, current: ModelVersion | None) -> ModelVersion | None:
        """The newest other version of ``name`` that was production before (from the history)."""
        q = (select(ModelVersion).join(ModelStageEvent, ModelStageEvent.model_version_id == ModelVersion.id)
             .where(ModelVersion.name == name, ModelStageEvent.to_stage == "production", ModelVersion.stage == "retired")
             .order_by(ModelStageEvent.id.desc()))  # fmt: skip
        for row in s.scalars(q).all():  # type: ignore[attr-defined]
            if current is None or row.id != current.id:
                return row  # type: ignore[no-any-return]
        return None

    def _row(self, s: object, ref: str) -> ModelVersion:
        name, version = parse_ref(ref)
        if version is None:
            raise StageError(f"{ref!r} names no version; write {name}@VERSION (see `radclip models list`)")
        row = s.scalars(
            select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        ).first()  # type: ignore[attr-defined]
        if row is None:
            known = ", ".join(
                f"{name}@{v}"
                for v in s.scalars(select(ModelVersion.version).where(ModelVersion.name == name))
            )  # type: ignore[attr-defined]
            raise StageError(f"no registered model {ref!r}; known: {known or '(none of that name)'}; "
                             "register it with `radclip models register PATH`")  # fmt: skip
        return row  # type: ignore[no-any-return]
