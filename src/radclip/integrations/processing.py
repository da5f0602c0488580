"""The seam between the PACS/FHIR integrations and the models: a :class:`StudyProcessor`.

Integrations hand a decoded image to a processor and get back what they deliver and log.
``radclip.integrations.pipeline.ModelPipeline`` is the real implementation (triage + image-text
screening + retrieval indexing); tests may pass any object with the same ``process`` method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from radclip.integrations.fhir_context import PatientStudyContext
from radclip.io.contract import LoadedImage


@dataclass(frozen=True)
class ProcessedStudy:
    study_instance_uid: str | None  # DICOM StudyInstanceUID (links back to the PACS)
    sop_instance_uid: str | None  # DICOM SOPInstanceUID of the image that was screened
    patient_ref: str | None  # pseudonymised patient id (phi.Pseudonymiser); never the raw id or name
    bundle: dict[str, Any]  # FHIR collection Bundle: DiagnosticReport first, then Observations
    findings: list[tuple[str, float, str]] = field(
        default_factory=list
    )  # (name, confidence, method), best first
    indexed: bool = False  # True when the image was added to the retrieval index by this call
    model_versions: dict[str, str] = field(default_factory=dict)  # role -> "name@version"
    # Patient/study context the bundle was built from. Holds the raw patient id (needed to link the
    # FHIR result to the Patient): in memory only, never logged or indexed.
    context: PatientStudyContext = field(default_factory=PatientStudyContext)
    # What the DICOM results (SR, heat map) are built from: fhir_report.ReportFinding (with operating
    # points), fhir_provenance.ModelIdentity, and the top finding's overlay (H, W, 3 uint8) with its caption.
    report_items: list[Any] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)
    heatmap: Any | None = None
    heatmap_caption: str = ""


class StudyProcessor(Protocol):
    """Screens, triages and indexes one decoded image; raises on model failure (not on bad input)."""

    def process(self, loaded: LoadedImage, source_ref: str) -> ProcessedStudy: ...
