"""``POST /api/v1/feedback``: a radiologist's confirmed findings for a study; one record per (study, reader).

The study is named the way ``/screen`` keyed it: its StudyInstanceUID, or the sha256 of the uploaded
file when it had none. A re-send by the same reader replaces their findings (``updated``) or changes
nothing (``unchanged``). Each accepted record asks the feedback monitor to re-evaluate live AUC.
"""

from __future__ import annotations

import difflib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from radclip.service.auth import PRINCIPAL
from radclip.service.model_ops import get_model_ops
from radclip.service.problems import ProblemError

router = APIRouter(prefix="/api/v1", tags=["feedback"])


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: see schemas.STRICT_BODY
    study_instance_uid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$",
                                           description="the study's DICOM StudyInstanceUID")  # fmt: skip
    upload_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the uploaded file, when it had no UID"
    )
    patient_id: str | None = Field(
        None, min_length=1, max_length=64, description="groups studies by patient (stored pseudonymised)"
    )
    findings: dict[str, bool] = Field(
        min_length=1, max_length=64, description='confirmed findings, e.g. {"Effusion": true, "Mass": false}'
    )


def _study_key(body: FeedbackBody) -> str:
    if (body.study_instance_uid is None) == (body.upload_sha256 is None):
        raise ProblemError(422, "Invalid feedback", "name the study with exactly one of study_instance_uid or upload_sha256",
                           "send the StudyInstanceUID of a DICOM upload, or the sha256 of a PNG/JPEG upload", "invalid-feedback")  # fmt: skip
    from radclip.lifecycle.routing import study_key

    return (
        study_key(body.study_instance_uid, b"") if body.study_instance_uid else f"sha256:{body.upload_sha256}"
    )


def _check_labels(findings: dict[str, bool], known: tuple[str, ...]) -> dict[str, bool]:
    lookup = {k.lower(): k for k in known}
    out, bad = {}, []
    for name, value in findings.items():
        canonical = lookup.get(name.strip().lower().replace(" ", "_"))
        if canonical is None:
            bad.append(name)
        else:
            out[canonical] = value
    if bad:
        hints = [
            f"{b!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(b, known, n=1)) else repr(b)
            for b in bad
        ]
        raise ProblemError(422, "Unknown finding", f"unknown finding(s) {', '.join(hints)}",
                           f"use the model's finding names: {', '.join(known)}", "unknown-finding")  # fmt: skip
    return out


@router.post("/feedback", status_code=201, summary="Record a radiologist's confirmed findings for a study")
async def feedback(request: Request, body: FeedbackBody) -> Any:
    ops = get_model_ops(request)
    if ops is None:
        raise ProblemError(503, "Feedback unavailable", "model operations are not running (no triage model or no database)",
                           "check the server log and /readyz, then restart", "ops-unavailable")  # fmt: skip
    key = _study_key(body)
    findings = _check_labels(body.findings, tuple(ops.lifecycle.deployment.production.runner.labels))
    reader = getattr(request.scope.get(PRINCIPAL), "name", "unknown")
    access = getattr(request.app.state, "radclip_access", None)
    patient = body.patient_id
    if patient is not None and access is not None and access.pseudonymiser is not None:
        patient = access.pseudonymiser.pseudonym(patient, kind="pid")
    status = await run_in_threadpool(ops.feedback.put, key, reader, findings, patient)
    if status != "unchanged":
        ops.monitor.request_evaluation()
    return JSONResponse({"study_key": key, "reader": reader, "status": status, "findings": findings},
                        status_code=201 if status == "created" else 200)  # fmt: skip
