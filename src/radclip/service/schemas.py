"""Typed request and response bodies of API v1."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LabelScore(BaseModel):
    label: str = Field(description="NIH ChestX-ray14 finding")
    probability: float = Field(ge=0, le=1, description="calibrated probability (per-class temperature scaling)")
    band: tuple[float, float] = Field(description="confidence band (low, high) around the probability")
    logit: float = Field(description="raw model logit, before calibration")


class ImageFacts(BaseModel):
    source_format: str
    photometric: str
    original_shape: tuple[int, int]
    view_position: str | None = None
    modality: str | None = None
    patient_sex: str | None = None
    patient_age_years: float | None = None


class TriageResponse(BaseModel):
    model_version: dict[str, object]
    findings: list[LabelScore] = Field(description="the 14 findings, sorted by probability, highest first")
    latency_ms: float
    inference_ms: float
    image: ImageFacts


class ExplainResponse(BaseModel):
    model_version: dict[str, object]
    label: str
    probability: float
    overlay_png_base64: str = Field(description="CAM overlay on the image, PNG, base64")
    cam_shape: tuple[int, int]
    latency_ms: float
