"""Process-wide settings, read from ``RADCLIP_*`` environment variables.

One pydantic-settings object; a bad value fails at start with a message naming the
variable. Nothing here is built at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RADCLIP_"


def repository_root() -> Path:
    """The checkout this package runs from (editable install), else the working directory."""
    here = Path(__file__).resolve()
    candidate = here.parents[2]
    if (candidate / "pyproject.toml").is_file() and (candidate / "src" / "radclip").is_dir():
        return candidate
    return Path.cwd()


def _default_data_root() -> Path:
    return (repository_root() / ".." / "shared" / "data").resolve()


class SettingsError(ValueError):
    """A RADCLIP_* variable has a value radclip cannot use."""


class Settings(BaseSettings):
    """Every field can be set as ``RADCLIP_<FIELD_NAME>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    data_root: Path = Field(default_factory=_default_data_root, description="Shared chest X-ray data (manifest.csv, images, reports).")
    home: Path = Field(default=Path("~/.radclip"), description="State directory: database, index, caches, queues.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///$RADCLIP_HOME/radclip.db.")
    redis_url: str | None = Field(default=None, description="redis://host:port/db for the shared text-embedding cache; unset = in-process only.")
    api_key: str | None = Field(default=None, description="If set, every /api request must send it in the X-API-Key header.")
    host: str = Field(default="127.0.0.1", description="Address the HTTP service binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the HTTP service binds to.")
    max_upload_mb: float = Field(default=50.0, gt=0, le=2048, description="Largest accepted upload, in MB.")
    torch_threads: int = Field(default=0, ge=0, le=256, description="Intra-op threads for inference; 0 = library default.")
    malloc_tuning: bool = Field(default=True, description="radclip serve fixes glibc's mmap/trim thresholds before it starts (runtime/allocator.py): the RSS reaches its plateau early instead of stepping up later; false = glibc defaults.")
    malloc_arena_max: int = Field(default=0, ge=0, le=64, description="With malloc_tuning: a glibc arena cap (M_ARENA_MAX); 0 = glibc's default (8 per core). A cap of 2 saved ~300 MB but slowed a 30-minute soak by 25%.")
    device: Literal["cpu", "cuda", "auto"] = Field(default="auto", description="Where the served models run; auto = CUDA when available (runtime/accelerator.py).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Root log level.")
    triage_model: str = Field(default="radclip-mobilenetv2-nih", description="Registered triage model name, or a path to a .safetensors file.")
    clip_model: str = Field(default="radclip-medclip-mini", description="Registered image-text model name, or a path to a .safetensors file.")
    backend: Literal["auto", "pytorch", "onnxruntime"] = Field(default="auto", description="Inference backend; auto = ONNX Runtime when exports matching the weights exist.")
    export_dir: Path | None = Field(default=None, description="Where ONNX exports live; default $RADCLIP_HOME/export.")
    corpus: Path | None = Field(default=None, description="Folder of images or manifest CSV indexed for retrieval at start; default $RADCLIP_DATA_ROOT/cxr/pool.")
    int8_image: bool = Field(default=False, description="Serve the image tower's static-int8 export (`radclip export onnx --int8-image`): 1.6x faster per image, zero-shot AUC within 0.005 on the test split; the study index is rebuilt for it.")
    index_on_start: bool = Field(default=True, description="Build or load the retrieval index on a background thread at service start.")
    seed_conditions: bool = Field(default=True, description="Register the shipped seed conditions when the registry is empty.")
    max_image_pixels: int = Field(default=50_000_000, ge=1_000_000, description="Images with more pixels are refused (decompression-bomb guard).")
    # -- hospital integration (radclip pacs): FHIR output, authentication, results back to PACS --
    fhir_url: str | None = Field(default=None, description="FHIR R4 base URL results are delivered to (radclip pacs --fhir default).")
    fhir_mrn_system: str | None = Field(default=None, description="Patient.identifier system of the DICOM PatientID (the MRN); the report's subject is found by Patient?identifier=SYSTEM|MRN.")
    fhir_create_patient: bool = Field(default=False, description="No Patient with the MRN: create one holding only the identifier (conditional create) instead of a logical reference.")
    fhir_report_detail: bool = Field(default=False, description="Also send the below-threshold findings, as Observations under one panel Observation (hasMember).")
    fhir_token: SecretStr | None = Field(default=None, description="Static bearer token for the FHIR server.")
    fhir_token_url: str | None = Field(default=None, description="OAuth2 token endpoint (client credentials / SMART Backend Services).")
    fhir_client_id: str | None = Field(default=None, description="OAuth2 client id.")
    fhir_client_secret: SecretStr | None = Field(default=None, description="OAuth2 client secret (client_secret_basic); unset with a private key = SMART Backend Services.")
    fhir_private_key: Path | None = Field(default=None, description="PEM RSA private key for SMART Backend Services (private_key_jwt, RS384).")
    fhir_key_id: str | None = Field(default=None, description="kid of the private key in the client's registered JWKS.")
    fhir_scope: str | None = Field(default=None, description="OAuth2 scope, e.g. 'system/DiagnosticReport.write system/Patient.read'.")
    pacs_return_ae: str | None = Field(default=None, description="Send the DICOM SR and heat map back by C-STORE to AET@host:port.")
    pacs_return_dicomweb: str | None = Field(default=None, description="Send the DICOM SR and heat map back by STOW-RS to this DICOMweb base URL.")
    rate_limits: str = Field(default="reader=600/60,ingest=1200/60,admin=600/60", description="Per-key token buckets by role: role=REQUESTS/SECONDS, comma-separated; 0/1 = unlimited. Shared through RADCLIP_REDIS_URL when set.")
    cors_origins: str = Field(default="", description="Comma-separated origins allowed by CORS (e.g. https://pacs.example.org); empty = CORS off.")
    phi_roles: str = Field(default="", description="Comma-separated key roles served original DICOM headers by /studies/{id}/file; empty = everyone gets a de-identified copy.")
    trusted_proxies: str = Field(default="", description="Comma-separated proxy addresses whose X-Forwarded-For is believed for the client address; empty = none.")

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty, which would switch authentication off; unset it, or create keys with `radclip keys create`")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @field_validator("home", "data_root", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("corpus", mode="before")
    @classmethod
    def _check_corpus(cls, value: object) -> object:
        if isinstance(value, str) and "://" in value:  # a URL would become a mangled path and fail later
            raise ValueError("must be a folder or a manifest CSV; the service does not list a DICOMweb server yet: "
                             "build that index with `radclip index dicomweb+http://HOST:PORT/dicom-web` (evaluation and "
                             "offline search) and point RADCLIP_CORPUS at a folder")  # fmt: skip
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://")):
            raise ValueError("must start with sqlite:// or postgresql:// (e.g. postgresql://user@127.0.0.1:5432/radclip)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis:// (e.g. redis://127.0.0.1:6379/0)")
        return value

    @field_validator("pacs_return_ae")
    @classmethod
    def _check_return_ae(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"[ -~]{1,16}@[^:@\s]+:\d{1,5}", value):
            raise ValueError("must be AET@host:port, e.g. ORTHANC@127.0.0.1:4242 (AE title at most 16 characters)")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'radclip.db'}"

    @property
    def cxr_root(self) -> Path:
        return self.data_root / "cxr"

    @property
    def resolved_export_dir(self) -> Path:
        return self.export_dir if self.export_dir is not None else self.home / "export"

    @property
    def resolved_corpus(self) -> Path:
        return self.corpus if self.corpus is not None else self.cxr_root / "pool"


def parse_rate_limits(text: str) -> dict[str, tuple[float, float]]:
    """``"reader=600/60,admin=0/1"`` -> ``{"reader": (600.0, 60.0), ...}``; raises ValueError saying what is wrong."""
    out: dict[str, tuple[float, float]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, _, rate = part.partition("=")
        count, _, per = rate.partition("/")
        try:
            n, seconds = float(count), float(per)
        except ValueError:
            raise ValueError(f"{part!r} is not role=REQUESTS/SECONDS (e.g. reader=600/60)") from None
        if n < 0 or seconds <= 0:
            raise ValueError(f"{part!r}: REQUESTS must be >= 0 and SECONDS > 0")
        out[role.strip()] = (n, seconds)
    return out


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus ``overrides``; raise :class:`SettingsError` naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            lines.append(f"{ENV_PREFIX}{field.upper()}={err.get('input')!r}: {err['msg']}")
        raise SettingsError("invalid radclip setting(s):\n  " + "\n  ".join(lines)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import)."""
    return load_settings()
