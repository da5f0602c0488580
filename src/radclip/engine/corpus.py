"""The retrieval corpus as :class:`~radclip.engine.study_index.StudyRecord` rows: a folder or a manifest CSV.

Used by ``radclip index`` and by the service's background index warm-up. The shared
``cxr/pool/`` folder is the demo corpus: unlabelled, so its records carry no findings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from radclip.engine.study_index import StudyRecord

IMAGE_SUFFIXES = (".png", ".dcm", ".dicom", ".jpg", ".jpeg")


def records_from_folder(folder: Path) -> list[StudyRecord]:
    """Every PNG/JPEG/DICOM below ``folder``; the study id is the path relative to it, without suffix."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [StudyRecord(study_id=str(p.relative_to(folder).with_suffix("")), image_path=str(p), source=folder.name) for p in files]


Pseudonymise = Callable[[str | None], str | None]


def default_pseudonymise() -> Pseudonymise:
    """The site's keyed pseudonym policy (``$RADCLIP_PHI_KEY`` or ``$RADCLIP_HOME/phi.key``)."""
    from radclip.io.pseudonyms import Pseudonymiser
    from radclip.settings import get_settings

    return Pseudonymiser.for_home(get_settings().home).pseudonym


def records_from_manifest(csv: Path, images_root: Path, pseudonymise: Pseudonymise | None = None) -> list[StudyRecord]:
    """Rows of a manifest (at least ``image_id`` and ``path``; metadata columns used where present).

    ``patient_id`` is stored as a keyed pseudonym (``pid-…``), never as given: the index and
    retrieval results must not carry an MRN. One patient keeps one pseudonym under one key.
    """
    import pandas as pd

    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = {"image_id", "path"} - set(frame.columns)
    if missing:
        raise ValueError(f"{csv} lacks column(s) {sorted(missing)}; a manifest needs at least image_id and path")

    def cell(row: Any, col: str) -> str | None:
        return (row.get(col) or None) if col in frame.columns else None

    pseudonym = (pseudonymise or default_pseudonymise()) if "patient_id" in frame.columns else (lambda v: None)

    return [
        StudyRecord(study_id=row["image_id"], image_path=str(images_root / row["path"]), patient_id=pseudonym(cell(row, "patient_id")),
                    view=cell(row, "view"), study_date=cell(row, "study_date"),
                    findings=cell(row, "report") or cell(row, "finding"), source=cell(row, "source"))
        for row in frame.to_dict("records")
    ]  # fmt: skip


def corpus_records(source: Path, images_root: Path | None = None) -> list[StudyRecord]:
    """A folder, or a ``.csv`` manifest (paths relative to ``images_root``, default the CSV's folder)."""
    source = Path(source)
    if source.is_dir():
        return records_from_folder(source)
    if source.suffix.lower() == ".csv" and source.is_file():
        return records_from_manifest(source, images_root or source.parent)
    raise FileNotFoundError(f"corpus {source} is neither a folder of images nor a manifest CSV; set RADCLIP_CORPUS")
