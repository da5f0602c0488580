"""Triage and explanation: the 14 calibrated findings, and a CAM for any of them, from one forward pass."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from radclip.service.deps import StateDep
from radclip.service.imaging import decode_upload, image_facts
from radclip.service.problems import ProblemError
from radclip.service.readiness import safe_reason
from radclip.service.schemas import ExplainResponse, LabelScore, TriageResponse
from radclip.service.uploads import read_image_upload

router = APIRouter(prefix="/api/v1", tags=["triage"])

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
        },
    }
}


def png_bytes(rgb) -> bytes:  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def label_scores(result) -> list[LabelScore]:  # type: ignore[no-untyped-def]
    """The 14 calibrated findings with their bands, highest probability first."""
    scores = [
        LabelScore(label=name, probability=float(p), band=(float(lo), float(hi)), logit=float(z))
        for name, p, lo, hi, z in zip(result.labels, result.probs, result.band_low, result.band_high, result.logits, strict=True)
    ]
    return sorted(scores, key=lambda s: s.probability, reverse=True)


def require_triage(state):  # type: ignore[no-untyped-def]
    if state.triage is None:
        reason = safe_reason(state.load_errors.get("triage"))
        raise ProblemError(503, "Triage model unavailable", f"the triage model is not loaded: {reason}",
                           "check RADCLIP_TRIAGE_MODEL and the server log, then restart", "model-unavailable")
    return state.triage


@router.post("/triage", response_model=TriageResponse, summary="Score the 14 NIH findings (calibrated)", openapi_extra=IMAGE_BODY)
async def triage(request: Request, state: StateDep) -> TriageResponse:
    start = time.perf_counter()
    runner = require_triage(state)
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))

    def work():  # type: ignore[no-untyped-def]
        decoded = decode_upload(upload, runner.input_size, state.settings.max_image_pixels)
        return decoded, runner.run(decoded.contract)

    decoded, result = await run_in_threadpool(work)
    state.metrics.inference.labels("triage", runner.backend).observe(result.inference_ms / 1000)
    return TriageResponse(
        model_version=runner.version_info(), findings=label_scores(result), inference_ms=result.inference_ms,
        latency_ms=(time.perf_counter() - start) * 1000, image=image_facts(decoded.image),
    )


@router.post("/explain", response_model=ExplainResponse, summary="Class activation map for one finding", openapi_extra=IMAGE_BODY)
async def explain(
    request: Request,
    state: StateDep,
    label: str = Query(..., min_length=1, max_length=64, description="finding to explain, e.g. Effusion"),
) -> ExplainResponse:
    start = time.perf_counter()
    runner = require_triage(state)
    try:
        runner.label_index(label)
    except KeyError as exc:
        raise ProblemError(422, "Unknown finding", str(exc.args[0]), "use one of the 14 NIH finding names", "unknown-finding") from None
    upload = await read_image_upload(request, int(state.settings.max_upload_mb * 1e6))

    def work():  # type: ignore[no-untyped-def]
        from radclip.explain.overlay import overlay

        decoded = decode_upload(upload, runner.input_size, state.settings.max_image_pixels)
        result = runner.run(decoded.contract)
        cam = runner.cam(result, label)
        return result, cam, png_bytes(overlay(decoded.contract[0], cam))

    result, cam, png = await run_in_threadpool(work)
    idx = runner.label_index(label)
    return ExplainResponse(
        model_version=runner.version_info(), label=result.labels[idx], probability=float(result.probs[idx]),
        overlay_png_base64=base64.b64encode(png).decode(), cam_shape=(int(cam.shape[0]), int(cam.shape[1])),
        latency_ms=(time.perf_counter() - start) * 1000,
    )
