"""Zero-shot screening: triage + CAM + image embedding + every registered condition, in one request."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from radclip.service.deps import StateDep
from radclip.service.imaging import decode_upload
from radclip.service.model_ops import get_model_ops
from radclip.service.problems import ProblemError
from radclip.service.readiness import safe_reason
from radclip.service.routers.triage import IMAGE_BODY, label_scores, png_bytes, require_triage
from radclip.service.schemas import (
    RetrievalHitOut,
    RuleNoteOut,
    ScreenFinding,
    ScreenResponse,
    StudyBlock,
    json_body,
)
from radclip.service.uploads import read_image_upload

router = APIRouter(prefix="/api/v1", tags=["screening"])


def require_screening(state: Any) -> Any:
    if state.screener is None or state.clip is None:
        reason = safe_reason(state.load_errors.get("clip"))
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
    except RecursionError:  # e.g. 200,000 nested arrays: the parser's stack runs out before the syntax ends
        raise ProblemError(422, "Invalid FHIR resource", f"form field {name!r} is nested too deeply to parse",
                           f"send {name} as a plain FHIR R4 JSON object (a Patient is a few levels deep)", "invalid-fhir") from None
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
    similar: int = Query(0, ge=0, le=100, description="also return this many similar indexed prior cases (0: none)"),
) -> Any:
    start = time.perf_counter()
    runner, _ = require_triage(state), require_screening(state)
    if explain is not None:
        try:
            runner.label_index(explain)
        except KeyError as exc:
            raise ProblemError(422, "Unknown finding", str(exc.args[0]), "use one of the 14 NIH finding names for ?explain=", "unknown-finding") from None
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))
    # One hop to a worker thread for all the blocking work (each hop is an event-loop round trip).
    ops = get_model_ops(request)
    return await run_in_threadpool(_screen_sync, state, upload, explain, format, top_k, similar, start, ops)


def _screen_sync(state: Any, upload: Any, explain: str | None, fmt: str, top_k: int | None, similar: int, start: float,
                 ops: Any = None) -> Response:  # fmt: skip
    """Decode; triage (keeping the CAM features) beside the batched image embedding; screen; explain and retrieve if asked."""
    from radclip.engine.rules import StudyContext
    from radclip.lifecycle.routing import study_key

    runner, screener = state.triage, state.screener
    marks = [("queue", time.perf_counter())]  # stage ends, reported in the Server-Timing header
    decoded = decode_upload(upload, runner.input_size, state.settings.max_image_pixels)
    ctx = _context(upload.fields, decoded.image.meta)
    # The lifecycle decides, once, which registered version answers this study (production or canary).
    choice = ops.lifecycle.choose(study_key(decoded.image.meta.study_instance_uid, upload.data)) if ops else None
    runner = choice.answer.runner if choice is not None else runner
    marks.append(("decode", time.perf_counter()))
    if state.screen_batcher is not None and runner is state.triage:  # one (batched) pass over the shared trunk gives both
        result, embedding = state.screen_batcher.submit(decoded.contract).result(120)
    else:
        clip_input = decoded.contract if state.clip.input_size == runner.input_size else decoded.at_size(state.clip.input_size)
        embedding_future = state.image_batcher.submit(clip_input)  # batched across concurrent requests
        result = runner.run(decoded.contract)
        embedding = embedding_future.result(120)
    state.metrics.inference.labels("triage", runner.backend).observe(result.inference_ms / 1000)
    if choice is not None:  # shadow run and prediction log, off the request path
        ops.shadow.submit(choice, decoded.contract, result)
    marks.append(("models", time.perf_counter()))

    screening = screener.screen(embedding, StudyContext(ctx.age_years, ctx.sex, ctx.view))
    findings = screening.findings[:top_k] if top_k else list(screening.findings)
    if findings:
        state.metrics.top_similarity.observe(findings[0].cosine)
    versions = state.model_versions(screening.registry_version)
    if choice is not None:
        versions["triage"] = {**runner.version_info(), "stage": choice.answer.stage}
    if fmt == "fhir":
        return JSONResponse(_fhir_bundle(findings, result, ctx, versions), media_type="application/fhir+json")
    explanation = None
    if explain is not None:
        from radclip.explain.overlay import overlay

        cam = runner.cam(result, explain)
        explanation = {"label": result.labels[runner.label_index(explain)],
                       "overlay_png_base64": base64.b64encode(png_bytes(overlay(decoded.contract[0], cam))).decode()}  # fmt: skip
    marks.append(("screen", time.perf_counter()))
    caveats, hits = list(screening.caveats), None
    if similar:
        if state.retriever is not None and state.warmup.state == "ready":
            hits = [RetrievalHitOut(rank=h.rank, study_id=h.study_id, similarity=round(float(h.similarity), 6), metadata=h.metadata)
                    for h in state.retriever.search_vector(embedding, similar)]  # fmt: skip
        else:
            w = state.warmup
            caveats.append(f"similar cases unavailable: the case index is {w.state} ({w.done} of {w.total} studies embedded); see /readyz")
        marks.append(("similar", time.perf_counter()))
    body = ScreenResponse(
        findings=[ScreenFinding(pathology=f.name, category=f.category, confidence=f.confidence, rank=i + 1, cosine=f.cosine,
                                calibrated=f.calibrated, suppressed=f.suppressed, notes=list(f.notes)) for i, f in enumerate(findings)],
        rules=[RuleNoteOut(**n.to_dict()) for n in screening.rules], caveats=caveats,
        triage=label_scores(result), embedding=np.round(np.asarray(embedding, dtype=np.float64), 6).tolist(),
        latency_ms=(time.perf_counter() - start) * 1000, model_version=versions,
        study=StudyBlock(context=ctx.to_dict()), explanation=explanation, similar=hits,
    )  # fmt: skip
    response = json_body(body)
    marks.append(("respond", time.perf_counter()))
    response.headers["Server-Timing"] = _server_timing(start, marks)
    return response


def _server_timing(start: float, marks: list[tuple[str, float]]) -> str:
    """``Server-Timing`` (W3C) value: each stage's duration in ms, then the total; e.g. ``decode;dur=2.31, ...``."""
    parts, prev = [], start
    for name, t in marks:
        parts.append(f"{name};dur={(t - prev) * 1000:.2f}")
        prev = t
    return ", ".join([*parts, f"total;dur={(prev - start) * 1000:.2f}"])


def _fhir_bundle(findings: list[Any], triage: Any, ctx: Any, versions: dict[str, Any]) -> dict[str, Any]:
    from radclip.integrations.fhir_report import build_report_bundle, report_findings

    items = report_findings(triage.labels, triage.probs, findings)
    flat = {role: f"{v.get('name', role)}@{v.get('version', '?')}" for role, v in versions.items() if isinstance(v, dict)}
    return build_report_bundle(items, ctx, flat)
