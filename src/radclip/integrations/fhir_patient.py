"""The report's subject by identifier: a DICOM PatientID is an MRN (``Patient.identifier``), not a FHIR id.

:func:`resolve_subject` searches ``Patient?identifier=SYSTEM|MRN`` (``SYSTEM`` from
``RADCLIP_FHIR_MRN_SYSTEM``; without it, ``identifier=MRN`` matches the value in any system).

- exactly one match: ``{"reference": "Patient/<server id>", "identifier": ...}``;
- no match: the logical reference ``{"identifier": ...}`` alone, or, with
  ``RADCLIP_FHIR_CREATE_PATIENT``, a conditional create (``If-None-Exist``) of a Patient that
  holds only that identifier, then its literal reference;
- several matches: the logical reference (radclip does not guess between patients).

``Patient/<MRN>`` is never written.
"""

from __future__ import annotations

import logging
from typing import Any

from radclip.integrations.fhir_client import FhirClient

log = logging.getLogger(__name__)


def identifier_query(identifier: dict[str, str]) -> str:
    """The token search value for an Identifier: ``system|value``, or ``value`` without a system."""
    value = identifier["value"]
    return f"{identifier['system']}|{value}" if identifier.get("system") else value


def resolve_subject(client: FhirClient, identifier: dict[str, str], create: bool = False) -> dict[str, Any]:
    """A Reference to the Patient with ``identifier`` (see the module docstring)."""
    query = identifier_query(identifier)
    found = client.search("Patient", {"identifier": query})
    if len(found) == 1:
        return {"reference": f"Patient/{found[0]['id']}", "identifier": identifier}
    if len(found) > 1:
        log.warning(
            "%d Patients share the report's identifier; referencing it logically, not by id", len(found)
        )
        return {"identifier": identifier}
    if not create:
        return {"identifier": identifier}
    made = client.create(
        {"resourceType": "Patient", "identifier": [identifier]}, if_none_exist=f"identifier={query}"
    )
    return {"reference": f"Patient/{made['id']}", "identifier": identifier}
