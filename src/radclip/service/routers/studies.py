"""Studies in the case corpus: ingest one (POST) and read its metadata (GET).

An ingested image is kept under ``$RADCLIP_HOME/studies/`` (the index embeds from files, and an
upload is never lost once acknowledged), embedded, and added to the live index. Patient ids are
stored as keyed pseudonyms (``pid-…``), never as given.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from radclip.service.deps import StateDep
from radclip.service.imaging import decode_upload
from radclip.service.problems import ProblemError
from radclip.service.routers.triage import IMAGE_BODY
from radclip.service.routers.web import _open_index, _row_dict, _study_row
from radclip.service.uploads import read_image_upload

router = APIRouter(prefix="/api/v1", tags=["studies"])
_SUFFIX = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg"}
STUDY_ID = Query(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
                 description="id to store it under; default the DICOM StudyInstanceUID, else the image's sha256 prefix")  # fmt: skip


def _store(home: Path, data: bytes, fmt: str) -> Path:
    folder = home / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:24] + _SUFFIX.get(fmt, ".bin"))
    if not path.is_file():
        # A temporary name of its own: concurrent uploads of the same bytes must not write one .tmp together.
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a crash never leaves a half-written study
    return path


@router.post("/studies", status_code=201, summary="Ingest an image of a study into the case corpus", openapi_extra=IMAGE_BODY)
async def ingest_study(request: Request, state: StateDep, study_id: str | None = STUDY_ID) -> dict[str, Any]:
    from radclip.engine.study_index import StudyRecord
    from radclip.integrations.phi import Pseudonymiser

    index = _open_index(state)
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))
    decoded = await run_in_threadpool(decode_upload, upload, state.clip.input_size, state.settings.max_image_pixels)
    meta = decoded.image.meta
    digest = hashlib.sha256(upload.data).hexdigest()[:24]
    sid = (study_id or meta.study_instance_uid or digest)[:200]  # the column width
    instance = (meta.sop_instance_uid or f"{sid}/{digest}")[:200]  # an image of the study: the PA and the lateral are two
    path = await run_in_threadpool(_store, state.settings.home, upload.data, meta.source_format)
    patient = Pseudonymiser.for_home(state.settings.home).pseudonym(meta.patient_id)
    record = StudyRecord(study_id=sid, image_path=str(path), patient_id=patient, view=meta.view_position,
                         study_date=meta.study_date, findings=None, source="api", instance_id=instance)  # fmt: skip
    added = await run_in_threadpool(index.add_studies, [record])
    if added:
        state.metrics.index_size.set(index.index.live)
    return {"study_id": sid, "instance_id": instance, "added": bool(added), "status": "added" if added else "already indexed",
            "study": _row_dict(_study_row(state, sid))}  # fmt: skip


@router.get("/studies/{study_id}", summary="One study's metadata")
def get_study(state: StateDep, study_id: str) -> dict[str, Any]:
    if len(study_id) > 512:
        raise ProblemError(422, "Invalid study id", "the study id is longer than 512 characters", "use an id from GET /api/v1/studies", "invalid-study-id")
    return _row_dict(_study_row(state, study_id))
