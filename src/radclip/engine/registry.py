"""The prompt registry: screening conditions, their prompt lists, versions and embeddings.

Each condition has a name (slug), synonyms, a category and 1-32 prompts. Registering the
same definition again is a no-op ("unchanged"); a changed definition becomes a new version
(the old one is kept: :meth:`PromptRegistry.history`). Embeddings are stored per
(condition version, text-model version) as float32 bytes and recomputed on demand for a
new text model. Storage is SQLAlchemy (SQLite or PostgreSQL), schema by Alembic.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radclip.engine import db
from radclip.engine.encoders import TextEmbedder, l2_normalise

SEED_PATH = Path(__file__).with_name("seed_conditions.json")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[_-][A-Za-z0-9]+)*$")
MAX_NAME = 64
MIN_PROMPTS, MAX_PROMPTS = 1, 32
MIN_PROMPT_CHARS, MAX_PROMPT_CHARS = 3, 300
MAX_SYNONYMS, MAX_SYNONYM_CHARS = 32, 100
# Each lost race on the unique name/version re-reads the row it lost to; one writer wins per attempt.
_WRITE_ATTEMPTS = 8
CATEGORIES = (
    "parenchymal", "pleural", "cardiomediastinal", "airway", "osseous",
    "devices_lines", "subdiaphragmatic", "normal", "other",
)  # fmt: skip


class RegistryError(ValueError):
    """A registration was refused; the message says what to change."""


class ConditionNotFound(RegistryError, LookupError):
    pass


@dataclass(frozen=True)
class RegistrationResult:
    status: str  # "registered" | "unchanged" | "updated"
    name: str
    version: int  # the condition's current version after the call
    embedding_id: int  # prompt_embeddings row of that version under the registry's text model


@dataclass(frozen=True)
class ConditionInfo:
    name: str
    category: str
    synonyms: tuple[str, ...]
    version: int
    status: str  # "active" | "retired"
    registered_by: str
    registered_at: str  # ISO 8601 UTC
    prompts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "synonyms": list(self.synonyms), "prompts": list(self.prompts)}


@dataclass(frozen=True)
class ConditionMatrix:
    """Active conditions' ensembled prompt embeddings under one text model, row-aligned."""

    names: list[str]
    categories: list[str]
    versions: list[int]
    version_ids: list[int]  # condition_versions row ids (calibrations are keyed by them)
    matrix: np.ndarray  # (K, dim) float32, rows L2-normalised
    text_version: str
    token: str = ""  # the registry state token it was built under (``PromptRegistry.state_token``)


def validate_definition(
    name: str, prompts: Sequence[str], synonyms: Iterable[str], category: str
) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
    """Return the cleaned definition or raise :class:`RegistryError` naming the fix."""
    name = (name or "").strip()
    if not name:
        raise RegistryError("condition name is empty; give a slug such as 'rib_fracture'")
    if len(name) > MAX_NAME or not NAME_RE.match(name):
        raise RegistryError(
            f"condition name {name!r} is not a slug; use letters, digits and single '_' or '-' "
            f"between them, starting with a letter, at most {MAX_NAME} characters (e.g. 'rib_fracture')"
        )
    if isinstance(prompts, str):
        raise RegistryError("prompts must be a list of strings, not one string; wrap it in a list")
    clean = tuple(" ".join(str(p).split()) for p in prompts)
    if not MIN_PROMPTS <= len(clean) <= MAX_PROMPTS:
        raise RegistryError(f"{name}: give {MIN_PROMPTS}-{MAX_PROMPTS} prompts, got {len(clean)}")
    for i, p in enumerate(clean):
        if not MIN_PROMPT_CHARS <= len(p) <= MAX_PROMPT_CHARS:
            raise RegistryError(
                f"{name}: prompt {i + 1} has {len(p)} characters; each prompt needs "
                f"{MIN_PROMPT_CHARS}-{MAX_PROMPT_CHARS} (e.g. 'chest x-ray showing a rib fracture')"
            )
    lowered = [p.lower() for p in clean]
    dups = sorted({p for p in lowered if lowered.count(p) > 1})
    if dups:
        raise RegistryError(f"{name}: duplicate prompt(s) {dups}; remove the repeats")
    syn = tuple(dict.fromkeys(" ".join(str(s).split()) for s in synonyms if str(s).strip()))
    if len(syn) > MAX_SYNONYMS or any(len(s) > MAX_SYNONYM_CHARS for s in syn):
        raise RegistryError(f"{name}: give at most {MAX_SYNONYMS} synonyms of at most {MAX_SYNONYM_CHARS} characters each; "
                            "shorten or drop the long ones")  # fmt: skip
    if category not in CATEGORIES:
        raise RegistryError(f"{name}: unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
    return name, clean, syn, category


def definition_sha256(prompts: Sequence[str], synonyms: Sequence[str], category: str) -> str:
    blob = json.dumps({"prompts": list(prompts), "synonyms": list(synonyms), "category": category}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def ensemble(prompt_vectors: np.ndarray) -> np.ndarray:
    """Mean of L2-normalised prompt embeddings, renormalised (open_clip's zero-shot recipe)."""
    return l2_normalise(l2_normalise(prompt_vectors).mean(axis=0))


def _iso(ts: Any) -> str:
    return ts.isoformat() if ts is not None else ""


class PromptRegistry:
    """Conditions in a database. ``database`` is a URL, an Engine, or None for the settings' URL."""

    def __init__(self, database: str | Engine | None = None, embedder: TextEmbedder | None = None, *, migrate: bool = True):
        self.engine = database if isinstance(database, Engine) else db.make_engine(database)
        if migrate:
            db.migrate(self.engine)
        self._sessions = db.session_factory(self.engine)
        self.embedder = embedder
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._matrix_cache: dict[str, tuple[str, ConditionMatrix]] = {}
        self.changes = 0  # bumped on every change made through this object

    # -- embedding --------------------------------------------------------------------------
    def _require_embedder(self) -> TextEmbedder:
        if self.embedder is None:
            raise RegistryError("this registry has no text embedder; pass embedder=... (see radclip.engine.encoders)")
        return self.embedder

    def _encode(self, texts: list[str], tag: str | None = None) -> np.ndarray:
        emb = self._require_embedder()
        if tag is not None and hasattr(emb, "invalidate_condition"):
            out = emb.encode_text(texts, tag=tag)  # type: ignore[call-arg]
        else:
            out = emb.encode_text(texts)
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(texts), emb.dim):
            raise RegistryError(f"text embedder returned shape {out.shape}, expected ({len(texts)}, {emb.dim})")
        return l2_normalise(out)

    def _store_embedding(self, s: Session, cv: db.ConditionVersion, vectors: np.ndarray, text_version: str) -> db.PromptEmbedding:
        row = db.PromptEmbedding(
            condition_version_id=cv.id,
            text_version=text_version,
            dim=int(vectors.shape[1]),
            n_prompts=int(vectors.shape[0]),
            prompt_vectors=np.ascontiguousarray(vectors, dtype=np.float32).tobytes(),
            ensemble=ensemble(vectors).tobytes(),
            created_at=db.utcnow(),
        )
        s.add(row)
        s.flush()
        return row

    def _changed(self, name: str | None = None) -> None:
        with self._lock:
            self.changes += 1
            self._matrix_cache.clear()
        emb = self.embedder
        if name is not None and emb is not None and hasattr(emb, "invalidate_condition"):
            emb.invalidate_condition(name)

    # -- writes -----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        prompts: Sequence[str],
        synonyms: Iterable[str] = (),
        category: str = "other",
        registered_by: str = "api",
    ) -> RegistrationResult:
        """Register or update a condition; identical definitions are a no-op ("unchanged")."""
        name, prompts, syn, category = validate_definition(name, prompts, synonyms, category)
        for _ in range(_WRITE_ATTEMPTS - 1):
            try:
                return self._register(name, prompts, syn, category, registered_by)
            except IntegrityError:  # a concurrent writer registered the same name/version first: re-read and decide again
                continue
        return self._register(name, prompts, syn, category, registered_by)

    def _register(self, name: str, prompts: tuple[str, ...], syn: tuple[str, ...], category: str, by: str) -> RegistrationResult:
        emb = self._require_embedder()
        sha = definition_sha256(prompts, syn, category)
        with self._sessions.begin() as s:
            cond = s.scalars(select(db.Condition).where(db.Condition.name == name)).one_or_none()
            if cond is not None:
                current = cond.versions[-1]
                if current.prompts_sha256 == sha and cond.status == "active":
                    pe = self._embedding_for(s, current, emb.version)
                    return RegistrationResult("unchanged", name, cond.version, pe.id)
            if cond is not None:
                self._changed(name)  # drop the old prompts' cached embeddings before re-embedding
            vectors = self._encode(list(prompts), tag=name)
            now = db.utcnow()
            if cond is None:
                cond = db.Condition(name=name, version=0, status="active", category=category,
                                    synonyms="[]", registered_by=by, registered_at=now)  # fmt: skip
                s.add(cond)
                s.flush()
                status = "registered"
            else:
                status = "updated"
            cond.version += 1
            cond.status, cond.category, cond.synonyms = "active", category, json.dumps(list(syn))
            cond.registered_by, cond.registered_at = by, now
            cv = db.ConditionVersion(condition_id=cond.id, version=cond.version, prompts_sha256=sha,
                                     synonyms=json.dumps(list(syn)), category=category,
                                     registered_by=by, registered_at=now)  # fmt: skip
            s.add(cv)
            s.flush()
            s.add_all(db.Prompt(condition_version_id=cv.id, position=i, text=p) for i, p in enumerate(prompts))
            pe = self._store_embedding(s, cv, vectors, emb.version)
            result = RegistrationResult(status, name, cond.version, pe.id)
        self._changed()
        return result

    def _embedding_for(self, s: Session, cv: db.ConditionVersion, text_version: str) -> db.PromptEmbedding:
        pe = s.scalars(
            select(db.PromptEmbedding).where(
                db.PromptEmbedding.condition_version_id == cv.id, db.PromptEmbedding.text_version == text_version
            )
        ).one_or_none()
        if pe is None:
            emb = self._require_embedder()
            if emb.version != text_version:
                raise RegistryError(
                    f"no stored embeddings for text model {text_version!r} and the registry's embedder is "
                    f"{emb.version!r}; pass an embedder of that version to compute them"
                )
            pe = self._store_embedding(s, cv, self._encode([p.text for p in cv.prompts], tag=cv.condition.name), text_version)
        return pe

    def retire(self, name: str) -> ConditionInfo:
        """Mark a condition retired: it leaves screening but its history stays."""
        with self._sessions.begin() as s:
            cond = self._get(s, name)
            cond.status = "retired"
        self._changed(name)
        return self.get(name)

    def load_seed(self, path: str | Path | None = None, registered_by: str = "seed") -> dict[str, int]:
        """Register every condition in the seed file (idempotent); returns counts per status."""
        data = json.loads(Path(path or SEED_PATH).read_text(encoding="utf-8"))
        items = data["conditions"]
        emb = self._require_embedder()
        if hasattr(emb, "invalidate_condition"):  # warm the cache with one batched encoder call
            emb.encode_text(list(dict.fromkeys(p for it in items for p in it["prompts"])))
        counts = {"registered": 0, "unchanged": 0, "updated": 0}
        for it in items:
            r = self.register(it["name"], it["prompts"], it.get("synonyms", ()), it.get("category", "other"), registered_by)
            counts[r.status] += 1
        return counts

    # -- reads ------------------------------------------------------------------------------
    def _get(self, s: Session, name: str) -> db.Condition:
        cond = s.scalars(select(db.Condition).where(db.Condition.name == name)).one_or_none()
        if cond is None:
            known = s.scalars(select(db.Condition.name)).all()
            import difflib

            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see `radclip conditions list`"
            raise ConditionNotFound(f"no condition named {name!r}{hint}")
        return cond

    def _info(self, cond: db.Condition) -> ConditionInfo:
        cv = cond.versions[-1]
        return ConditionInfo(cond.name, cond.category, tuple(json.loads(cond.synonyms)), cond.version, cond.status,
                             cond.registered_by, _iso(cond.registered_at), tuple(p.text for p in cv.prompts))  # fmt: skip

    def get(self, name: str) -> ConditionInfo:
        with self._sessions() as s:
            return self._info(self._get(s, name))

    def list(self, active_only: bool = True) -> list[ConditionInfo]:
        with self._sessions() as s:
            q = select(db.Condition).order_by(db.Condition.name)
            if active_only:
                q = q.where(db.Condition.status == "active")
            return [self._info(c) for c in s.scalars(q).all()]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first, with prompts, author and time."""
        with self._sessions() as s:
            cond = self._get(s, name)
            return [
                {"version": cv.version, "prompts": [p.text for p in cv.prompts], "synonyms": json.loads(cv.synonyms),
                 "category": cv.category, "registered_by": cv.registered_by, "registered_at": _iso(cv.registered_at),
                 "prompts_sha256": cv.prompts_sha256, "current": cv.version == cond.version,
                 "status": cond.status if cv.version == cond.version else "superseded"}
                for cv in cond.versions
            ]  # fmt: skip

    def state_token(self) -> str:
        """Changes whenever any condition's version or status changes (cheap; one small query)."""
        with self._sessions() as s:
            rows = s.execute(select(db.Condition.name, db.Condition.version, db.Condition.status)).all()
        return hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()[:16]

    def condition_matrix(self, text_version: str | None = None) -> ConditionMatrix:
        """Active conditions' ensembled embeddings, computing any missing ones for ``text_version``."""
        text_version = text_version or self._require_embedder().version
        token = self.state_token()
        cached = self._matrix_cache.get(text_version)
        if cached is not None and cached[0] == token:
            return cached[1]
        with self._build_lock:  # one builder at a time: two would insert the same missing embedding rows
            cached = self._matrix_cache.get(text_version)
            if cached is not None and cached[0] == token:
                return cached[1]
            return self._build_matrix(text_version, token)

    def _build_matrix(self, text_version: str, token: str) -> ConditionMatrix:
        with self._sessions.begin() as s:
            conds = s.scalars(select(db.Condition).where(db.Condition.status == "active").order_by(db.Condition.name)).all()
            rows, names, cats, vers, vids = [], [], [], [], []
            for c in conds:
                cv = c.versions[-1]
                pe = self._embedding_for(s, cv, text_version)
                rows.append(np.frombuffer(pe.ensemble, dtype=np.float32))
                names.append(c.name), cats.append(c.category), vers.append(c.version), vids.append(cv.id)
            dim = rows[0].shape[0] if rows else (self.embedder.dim if self.embedder else 0)
            matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
        out = ConditionMatrix(names, cats, vers, vids, matrix, text_version, token)
        with self._lock:
            self._matrix_cache[text_version] = (token, out)
        return out

    def embeddings_matrix(self, text_version: str | None = None) -> tuple[list[str], np.ndarray]:
        """(names, (K, dim) matrix) of active conditions; see :meth:`condition_matrix`."""
        m = self.condition_matrix(text_version)
        return m.names, m.matrix
