"""Typed request and response bodies of API v1."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from radclip.engine import registry as reg

# What the registry's validate_definition accepts, stated in the schema so a generated client (and a
# fuzzer) can predict it. Python's str.split() also splits on \x1c-\x1f, which regex \s does not cover.
_WS, _NON_WS = r"[\s\x1c-\x1f]", r"[^\s\x1c-\x1f]"
SINGLE_SPACED = rf"^{_NON_WS}+({_WS}{_NON_WS}+)*$"  # no leading/trailing/double whitespace: kept as sent
NOT_BLANK = _NON_WS  # unanchored: at least one non-whitespace character
Category = Literal[
    "parenchymal", "pleural", "cardiomediastinal", "airway", "osseous",
    "devices_lines", "subdiaphragmatic", "normal", "other",
]  # fmt: skip


class LabelScore(BaseModel):
    label: str = Field(description="NIH ChestX-ray14 finding")
    probability: float = Field(ge=0, le=1, description="calibrated probability (per-label temperature and intercept fitted on validation)")
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


class ScreenFinding(BaseModel):
    pathology: str
    category: str
    confidence: float = Field(ge=0, le=1, description="calibrated confidence in [0, 1] after clinical rules")
    rank: int
    cosine: float = Field(description="raw image–text cosine similarity")
    calibrated: bool = Field(description="False where the condition has no fitted calibration yet (default mapping)")
    suppressed: bool = False
    notes: list[str] = Field(default_factory=list, description="names of the clinical rules that touched this finding")


class RuleNoteOut(BaseModel):
    rule: str
    condition: str | None
    action: str
    reason: str
    before: float | None = None
    after: float | None = None


class StudyBlock(BaseModel):
    context: dict[str, object] = Field(description="patient/study context (from FHIR resources or the DICOM header)")
    fhir_patient: dict[str, object] | None = None
    fhir_imaging_study: dict[str, object] | None = None


class RetrievalHitOut(BaseModel):
    rank: int
    study_id: str
    similarity: float
    metadata: dict[str, object]


class ScreenResponse(BaseModel):
    findings: list[ScreenFinding]
    rules: list[RuleNoteOut]
    caveats: list[str]
    triage: list[LabelScore]
    embedding: list[float] = Field(description="the image's 512-d L2-normalised embedding")
    latency_ms: float
    model_version: dict[str, object]
    study: StudyBlock
    explanation: dict[str, object] | None = None
    similar: list[RetrievalHitOut] | None = Field(
        default=None, description="the most similar indexed prior cases (only with ?similar=K; null while the index is not ready)"
    )


# JSON bodies are validated strictly: lax pydantic turned `"top_k": true` or `"top_k": "5"` into 1 and 5,
# accepting requests the OpenAPI document forbids (schemathesis ST201). Strict = only the documented JSON types.
STRICT_BODY = ConfigDict(strict=True)


class RetrieveRequest(BaseModel):
    model_config = STRICT_BODY
    query: str = Field(min_length=1, max_length=2000, pattern=NOT_BLANK,
                       description="free-text description, e.g. 'left pleural effusion in elderly patient'")  # fmt: skip
    top_k: int = Field(default=10, ge=1, le=100)


class RetrieveResponse(BaseModel):
    results: list[RetrievalHitOut]
    index: dict[str, object]
    latency_ms: float


class RegisterConditionRequest(BaseModel):
    model_config = STRICT_BODY
    name: str = Field(min_length=1, max_length=reg.MAX_NAME, pattern=reg.NAME_RE.pattern,
                      description="slug: a letter, then letters/digits with single '_' or '-' between, e.g. 'rib_fracture'")  # fmt: skip
    prompts: list[Annotated[str, Field(min_length=reg.MIN_PROMPT_CHARS, max_length=reg.MAX_PROMPT_CHARS, pattern=SINGLE_SPACED)]] = Field(
        min_length=reg.MIN_PROMPTS, max_length=reg.MAX_PROMPTS, json_schema_extra={"uniqueItems": True},
        description="radiology phrasings of the finding, 3-300 characters each, single-spaced; no repeats (case-insensitive)")  # fmt: skip
    # Bounded: without a limit 32 x 512 KB synonyms were stored and GET /conditions returned 16.8 MB.
    synonyms: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=32, description="other names, at most 32 of at most 100 characters")
    category: Category = "other"
    registered_by: str = Field(default="api", max_length=80)


class RegisterConditionResponse(BaseModel):
    status: str = Field(description="registered | updated | unchanged")
    name: str
    version: int
    embedding_id: str


class ConditionOut(BaseModel):
    name: str
    category: str
    synonyms: list[str]
    version: int
    status: str
    registered_by: str
    registered_at: str
    prompts: list[str]


def json_body(model: BaseModel, status_code: int = 200, media_type: str = "application/json") -> Response:
    """A response already serialised by pydantic's Rust core.

    Returning a ``Response`` skips FastAPI's second validation and ``jsonable_encoder`` pass over
    the model (~1.7 ms for a /screen answer); the route's ``response_model`` still documents it.
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type=media_type)
