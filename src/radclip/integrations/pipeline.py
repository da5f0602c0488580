"""The models composed into a :class:`radclip.integrations.processing.StudyProcessor`.

:class:`ModelPipeline` runs one decoded image through triage, the image-text model and the
zero-shot screener, builds the FHIR report Bundle, and adds the image to the retrieval
index (as a header-free PNG under ``image_dir``, with a pseudonymised patient id): one record
per image, keyed by its SOP Instance UID and grouped by the StudyInstanceUID as study id. :func:`build_pipeline` loads every component from the
settings, the way the service's lifespan does, for the ``radclip pacs`` commands. The
service's ``/screen`` route could reuse :meth:`ModelPipeline.findings_for`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radclip.integrations.fhir_context import PatientStudyContext, context_from_dicom
from radclip.integrations.processing import ProcessedStudy
from radclip.io.contract import ImageMeta, LoadedImage, to_contract_tensor

log = logging.getLogger(__name__)
PACS_INDEX_SNAPSHOT = "pacs-ingest"  # the index key snapshot that PACS-ingested studies live under


def _safe_name(uid: str) -> str:
    """A file name from a DICOM UID (digits and dots); anything else in a malformed one becomes ``_``."""
    return re.sub(r"[^0-9A-Za-z.\-]", "_", uid)[:200]


@dataclass
class PipelineParts:
    triage: Any  # radclip.runtime.triage_runner.TriageRunner
    clip: Any | None = None  # radclip.runtime.clip_runner.ClipRunner; None: triage only, nothing indexed
    screener: Any | None = None  # radclip.engine.screening.Screener; None: no zero-shot findings
    index: Any | None = None  # radclip.engine.study_index.StudyIndex, already opened; None: nothing indexed
    closers: list[Callable[[], None]] = field(default_factory=list)  # release resources (db engines)


def heatmap_overlay(triage: Any, contract: np.ndarray, result: Any, items: list[Any], size: int = 512) -> tuple[np.ndarray, str]:
    """(RGB overlay, caption): the class activation map of the top triage finding (the best present one,
    else the most likely) over the contract image, resized to ``size`` x ``size``."""
    from PIL import Image

    from radclip.explain.overlay import overlay

    top = max((f for f in items if f.source == "triage"), key=lambda f: (f.present, f.confidence))
    rgb = overlay(contract[0], triage.cam(result, top.name), alpha=0.4)
    rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    state = "above" if top.present else "below"
    name = top.name.replace("_", " ")
    return rgb, f"{name} {top.confidence:.2f} ({state} threshold {min(top.threshold, 1):.2f}); class activation map"


class ModelPipeline:
    """See the module docstring. Not thread-safe: callers serialise ``process`` (the Ingestor does)."""

    def __init__(self, parts: PipelineParts, pseudonymise: Callable[[str | None], str | None], image_dir: Path,
                 context_fn: Callable[[ImageMeta], PatientStudyContext] | None = None, report_options: Any = None) -> None:  # fmt: skip
        self.parts = parts
        self.pseudonymise = pseudonymise  # raw patient id -> pseudonym (phi.Pseudonymiser.pseudonym)
        self.image_dir = Path(image_dir)
        self.context_fn = (
            context_fn or context_from_dicom
        )  # e.g. fhir_exchange.fetch_context bound to a client
        self.report_options = report_options  # fhir_report.ReportOptions (MRN system, detail); None: defaults
        self.heatmaps = False  # compute the top finding's heat map (for the DICOM results sent back to PACS)

    def model_versions(self) -> dict[str, str]:
        p = self.parts
        out = {"triage": f"{p.triage.card.name}@{p.triage.card.version}"}
        if p.clip is not None:
            out["clip"] = p.clip.version
        token = getattr(getattr(p.screener, "conditions", None), "state_token", None)
        if callable(token):
            out["registry"] = str(token())
        return out

    def model_identities(self) -> list[Any]:
        """The models as :class:`radclip.integrations.fhir_provenance.ModelIdentity` (triage first)."""
        from radclip.integrations.fhir_provenance import model_identity

        p = self.parts
        return [model_identity("triage", p.triage.card)] + ([model_identity("clip", p.clip.card)] if p.clip is not None else [])

    def findings_for(
        self, contract: np.ndarray, clip_input: np.ndarray | None, ctx: PatientStudyContext
    ) -> tuple[list[Any], np.ndarray | None]:
        """Report findings (triage, then zero-shot not covered by triage) and the image embedding."""
        items, embedding, _ = self._screen(contract, clip_input, ctx)
        return items, embedding

    def _screen(
        self, contract: np.ndarray, clip_input: np.ndarray | None, ctx: PatientStudyContext
    ) -> tuple[list[Any], np.ndarray | None, Any]:
        """:meth:`findings_for` plus the triage result (its feature map gives the heat map)."""
        from radclip.integrations.fhir_report import report_findings
        from radclip.integrations.operating_points import triage_operating_points

        p = self.parts
        result = p.triage.run(contract)
        embedding, screened = None, []
        if p.clip is not None and clip_input is not None:
            embedding = p.clip.encode_images(clip_input[None])[0]
            if p.screener is not None:
                from radclip.engine.rules import StudyContext

                screened = p.screener.screen(embedding, StudyContext(ctx.age_years, ctx.sex, ctx.view)).findings
        ops = triage_operating_points(result.labels, getattr(p.triage.card, "calibration", None))
        return report_findings(result.labels, result.probs, screened, ops), embedding, result

    def _index(
        self, ctx: PatientStudyContext, clip_input: np.ndarray, patient_ref: str | None, summary: str
    ) -> bool:
        from PIL import Image

        from radclip.engine.study_index import StudyRecord

        index = self.parts.index
        if index is None or not ctx.study_instance_uid:
            return False
        # One record per image (SOP Instance UID), grouped by study: the PA and the lateral are two.
        instance = ctx.sop_instance_uid or ctx.study_instance_uid
        self.image_dir.mkdir(parents=True, exist_ok=True)
        path = self.image_dir / f"{_safe_name(instance)}.png"  # pixels only: no DICOM header, no names
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # a crash never leaves half a PNG
        Image.fromarray(np.round(clip_input[0] * 255).astype(np.uint8), mode="L").save(tmp, format="PNG")
        tmp.replace(path)
        record = StudyRecord(study_id=ctx.study_instance_uid, image_path=str(path), patient_id=patient_ref, view=ctx.view,
                             study_date=ctx.study_date, findings=summary, source="pacs", instance_id=instance)  # fmt: skip
        return index.add_studies([record]) == 1

    def process(self, loaded: LoadedImage, source_ref: str) -> ProcessedStudy:
        from radclip.integrations.fhir_report import build_readable_report

        ctx = self.context_fn(loaded.meta)
        p = self.parts
        contract = to_contract_tensor(loaded.pixels, p.triage.input_size)
        clip_input = None
        if p.clip is not None:
            clip_input = (
                contract
                if p.clip.input_size == p.triage.input_size
                else to_contract_tensor(loaded.pixels, p.clip.input_size)
            )
        items, _, result = self._screen(contract, clip_input, ctx)
        heat = heatmap_overlay(p.triage, contract, result, items) if self.heatmaps else None
        versions = self.model_versions()
        bundle = build_readable_report(items, ctx, self.model_identities(), self.report_options)
        ranked = sorted(((f.name, f.confidence, f.source) for f in items), key=lambda t: -t[1])
        patient_ref = self.pseudonymise(ctx.patient_id)
        present = sorted((f for f in items if f.present), key=lambda f: -f.confidence)
        summary = "; ".join(f"{f.name} {f.confidence:.2f}" for f in present) or "no finding above threshold"
        indexed = self._index(ctx, clip_input, patient_ref, summary) if clip_input is not None else False
        return ProcessedStudy(study_instance_uid=ctx.study_instance_uid, sop_instance_uid=ctx.sop_instance_uid or loaded.meta.sop_instance_uid,
                              patient_ref=patient_ref, bundle=bundle, findings=ranked, indexed=indexed,
                              model_versions=versions, context=ctx, report_items=items, models=self.model_identities(),
                              heatmap=heat[0] if heat else None, heatmap_caption=heat[1] if heat else "")  # fmt: skip

    def close(self) -> None:
        for fn in self.parts.closers:
            fn()


def load_parts(settings: Any, with_clip: bool = True) -> PipelineParts:
    """Triage, CLIP, prompt registry, screener and the PACS study index, from the settings (like the service)."""
    from radclip.runtime.loading import load_clip_runner, load_triage_runner

    parts = PipelineParts(triage=load_triage_runner(settings))
    if not with_clip:
        return parts
    from radclip.engine.registry import PromptRegistry
    from radclip.engine.screening import Screener
    from radclip.engine.study_index import StudyIndex, default_load_fn
    from radclip.engine.text_cache import CacheConfig, TextEmbeddingCache

    clip = parts.clip = load_clip_runner(settings)
    text = TextEmbeddingCache(clip, CacheConfig(redis_url=settings.redis_url))
    settings.home.mkdir(parents=True, exist_ok=True)
    registry = PromptRegistry(settings.resolved_database_url, embedder=text)
    if settings.seed_conditions and not registry.list(active_only=False):
        registry.load_seed()
    parts.screener = Screener(registry, image_version=clip.version, text_version=text.version)
    index = StudyIndex(
        clip, database=registry.engine, root=settings.home / "index", load_fn=default_load_fn(clip.input_size)
    )
    report = index.open([], snapshot=PACS_INDEX_SNAPSHOT)
    log.info("PACS study index %s: %s (%d studies)", report.key.slug, report.reason, report.live)
    parts.index = index
    parts.closers.append(registry.engine.dispose)
    return parts


def build_pipeline(settings: Any, context_fn: Callable[[ImageMeta], PatientStudyContext] | None = None,
                   with_clip: bool = True) -> ModelPipeline:  # fmt: skip
    """A ready :class:`ModelPipeline` for ``settings`` (RADCLIP_* models, RADCLIP_HOME state)."""
    from radclip.integrations.phi import Pseudonymiser

    if getattr(settings, "torch_threads", 0):
        import torch

        torch.set_num_threads(settings.torch_threads)
    from radclip.integrations.fhir_report import ReportOptions

    home = Path(settings.home).expanduser()
    options = ReportOptions(mrn_system=getattr(settings, "fhir_mrn_system", None), detail=bool(getattr(settings, "fhir_report_detail", False)))
    pipeline = ModelPipeline(load_parts(settings, with_clip), Pseudonymiser.for_home(home).pseudonym,
                             home / "pacs" / "index-images", context_fn=context_fn, report_options=options)  # fmt: skip
    pipeline.heatmaps = bool(getattr(settings, "pacs_return_ae", None) or getattr(settings, "pacs_return_dicomweb", None))
    return pipeline
