"""The model as a FHIR ``Device`` and a ``Provenance`` naming it as the author of a report.

Follows the HL7 "AI Transparency on FHIR" pattern where it fits R4: each model is a Device
(name, version, weights sha256 as an identifier); a Provenance targets the DiagnosticReport
and its Observations with the Device as ``author``; and each generated resource carries the
``AIAST`` ("Artificial Intelligence asserted") security label in ``meta.security``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SHA256_SYSTEM = "https://radclip.dev/fhir/NamingSystem/model-weights-sha256"
AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
AUTHOR = {
    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
    "code": "author",
    "display": "Author",
}


@dataclass(frozen=True)
class ModelIdentity:
    role: str  # "triage" | "clip"
    name: str  # the model card's name, e.g. radclip-mobilenetv2-nih
    version: str  # the card's version
    sha256: str | None = None  # sha256 of the weights file (the card's weights_sha256)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def model_identity(role: str, card: Any) -> ModelIdentity:
    """A :class:`ModelIdentity` from a model card (``name``, ``version``, ``weights_sha256``)."""
    return ModelIdentity(
        role, str(card.name), str(card.version), getattr(card, "weights_sha256", None) or None
    )


def device_resource(model: ModelIdentity, local_id: str) -> dict[str, Any]:
    """A Device for one model; ``local_id`` is the bundle-local id (made deterministic at delivery)."""
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": local_id,
        "status": "active",
        "manufacturer": "radclip",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"text": f"AI model ({model.role})"},
        "version": [{"value": model.version}],
        "note": [
            {
                "text": "Research software; its output is a preliminary, machine-generated finding, not a diagnosis."
            }
        ],
    }
    if model.sha256:
        device["identifier"] = [{"system": SHA256_SYSTEM, "value": model.sha256}]
    return device


def provenance_resource(
    local_id: str, targets: Sequence[str], devices: Sequence[str], recorded: dt.datetime
) -> dict[str, Any]:
    """A Provenance: ``targets`` (references) were authored by the ``devices`` (references) at ``recorded``."""
    return {
        "resourceType": "Provenance",
        "id": local_id,
        "target": [{"reference": t} for t in targets],
        "recorded": recorded.isoformat(),
        "agent": [{"type": {"coding": [AUTHOR]}, "who": {"reference": d}} for d in devices],
        "reason": [{"text": "AI triage of a chest radiograph"}],
    }
