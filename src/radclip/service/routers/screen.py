"""Zero-shot screening: triage + CAM + image embedding + every registered condition, in one request."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from radclip.service.deps import ApiKeyDep, StateDep
from radclip.service.imaging import decode_upload
from radclip.service.problems import ProblemError
from radclip.service.routers.triage import IMAGE_BODY, label_scores, png_bytes, require_triage
from radclip.service.schemas import RuleNoteOut, ScreenFinding, ScreenResponse, StudyBlock
from radclip.service.uploads import read_image_upload

router = APIRouter(prefix="/api/v1", tags=["screening"], dependencies=[ApiKeyDep])


def require_screening(state: Any) -> Any:
    if state.screener is None or state.clip is None:
        reason = state.load_errors.get("clip", "not configured")
        raise ProblemError(503, "Screening model unavailable", f"the image-text model is not loaded: {reason}",
                           "check RADCLIP_CLIP_MODEL and the server log, then restart", "model-unavailable")
    return state.screener


def _fhir_field(fields: dict[str, str], name: str) -> dict[str, Any] | None:
    raw = fields.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProblemError(422, "Invalid FHIR resource", f"form field {name!r} is not JSON: {exc.msg} at position {exc.pos}",
                           f"send {name} as a FHIR R4 JSON object", "invalid-fhir") from None
    if not isinstance(value, dict):
        raise ProblemError(422, "Invalid FHIR resource", f"form field {name!r} must be a JSON object", f"send {name} as a FHIR R4 JSON object", "invalid-fhir")
    return value


def _context(upload_fields: dict[str, str], meta: Any) -> Any:
    from radclip.integrations.fhir_context import FhirValidationError, context_from_dicom, context_from_fhir

    patient, study = _fhir_field(upload_fields, "patient"), _fhir_field(upload_fields, "imaging_study")
    try:
        return context_from_fhir(patient, study, meta) if (patient or study) else context_from_dicom(meta)
    except FhirValidationError as exc:
        raise ProblemError(422, "Invalid FHIR resource", str(exc), "fix the named field of the FHIR resource", "invalid-fhir") from None


@router.post("/screen", response_model=ScreenResponse, summary="Screen an image against every registered condition",
             openapi_extra=IMAGE_BODY, responses={200: {"content": {"application/fhir+json": {}}}})  # fmt: skip
async def screen(
    request: Request,
    state: StateDep,
    explain: str | None = Query(None, min_length=1, max_length=64, description="add the CAM overlay of this triage finding"),
    format: str = Query("json", pattern="^(json|fhir)$", description="json, or fhir for a DiagnosticReport Bundle"),
    top_k: int | None = Query(None, ge=1, le=1000, description="findings returned, highest confidence first (default: all)"),
) -> Any:
    start = time.perf_counter()
    runner, screener = require_triage(state), require_screening(state)
    if explain is not None:
        try:
            runner.label_index(explain)
        except KeyError as exc:
            raise ProblemError(422, "Unknown finding", str(exc.args[0]), "use one of the 14 NIH finding names for ?explain=", "unknown-finding") from None
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))
    decoded = await run_in_threadpool(decode_upload, upload, runner.input_size, state.settings.max_image_pixels)
    ctx = _context(upload.fields, decoded.image.meta)
    clip_input = decoded.contract if state.clip.input_size == runner.input_size else decoded.at_size(state.clip.input_size)
    embedding_future = state.image_batcher.submit(clip_input)  # batched across concurrent requests
    result = await run_in_threadpool(runner.run, decoded.contract)
    embedding = await run_in_threadpool(embedding_future.result, 120)
    state.metrics.inference.labels("triage", runner.backend).observe(result.inference_ms / 1000)

    from radclip.engine.rules import StudyContext

    screening = await run_in_threadpool(screener.screen, embedding, StudyContext(ctx.age_years, ctx.sex, ctx.view))
    findings = screening.findings[:top_k] if top_k else list(screening.findings)
    if findings:
        state.metrics.top_similarity.observe(findings[0].cosine)
    explanation = None
    if explain is not None:
        from radclip.explain.overlay import overlay

        cam = await run_in_threadpool(runner.cam, result, explain)
        explanation = {"label": result.labels[runner.label_index(explain)],
                       "overlay_png_base64": base64.b64encode(png_bytes(overlay(decoded.contract[0], cam))).decode()}  # fmt: skip
    versions = state.model_versions()
    if format == "fhir":
        return JSONResponse(_fhir_bundle(findings, result, ctx, versions), media_type="application/fhir+json")
    return ScreenResponse(
        findings=[ScreenFinding(pathology=f.name, category=f.category, confidence=f.confidence, rank=i + 1, cosine=f.cosine,
                                calibrated=f.calibrated, suppressed=f.suppressed, notes=list(f.notes)) for i, f in enumerate(findings)],
        rules=[RuleNoteOut(**n.to_dict()) for n in screening.rules], caveats=list(screening.caveats),
        triage=label_scores(result), embedding=np.asarray(embedding, dtype=float).round(6).tolist(),
        latency_ms=(time.perf_counter() - start) * 1000, model_version=versions,
        study=StudyBlock(context=ctx.to_dict()), explanation=explanation,
    )  # fmt: skip


def _fhir_bundle(findings: list[Any], triage: Any, ctx: Any, versions: dict[str, Any]) -> dict[str, Any]:
    from radclip.integrations.fhir_report import build_report_bundle, report_findings

    items = report_findings(triage.labels, triage.probs, findings)
    flat = {role: f"{v.get('name', role)}@{v.get('version', '?')}" for role, v in versions.items() if isinstance(v, dict)}
    return build_report_bundle(items, ctx, flat)
