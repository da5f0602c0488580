"""Patients by identifier against the Medplum test server: the MRN is Patient.identifier, never the id."""

from __future__ import annotations

from typing import Any

from integration_servers import MRN_SYSTEM, make_patient

from radclip.integrations.fhir_client import FhirClient
from radclip.integrations.fhir_context import PatientStudyContext
from radclip.integrations.fhir_exchange import deliver, delivery_key, report_delivery
from radclip.integrations.fhir_patient import resolve_subject
from radclip.integrations.fhir_provenance import ModelIdentity
from radclip.integrations.fhir_report import ReportFinding, ReportOptions, build_readable_report

MODELS = [ModelIdentity("triage", "tiny-triage", "test-0", "cd" * 32)]


def _payload(mrn: str, study: str, create: bool) -> dict[str, Any]:
    ctx = PatientStudyContext(patient_id=mrn, study_instance_uid=study, series_instance_uid=f"{study}.1")
    bundle = build_readable_report(
        [ReportFinding("Effusion", 0.81, "triage")], ctx, MODELS, ReportOptions(mrn_system=MRN_SYSTEM)
    )
    return report_delivery(bundle, ctx, delivery_key(study, None, {"triage": "t"}), create_patient=create)


def test_subject_resolved_by_identifier(fhir_server: Any) -> None:
    with FhirClient(fhir_server.url) as client:
        pid = make_patient(client, "MRN-100")
        ident = {"system": MRN_SYSTEM, "value": "MRN-100"}
        assert resolve_subject(client, ident) == {"reference": f"Patient/{pid}", "identifier": ident}
        # same value in another system: not this patient
        other = {"system": "urn:oid:9.9", "value": "MRN-100"}
        assert resolve_subject(client, other) == {"identifier": other}
        ref = deliver(client, _payload("MRN-100", "1.2.826.0.1.100", create=False))
        report = client.read(*ref.split("/"))
        assert report["subject"]["reference"] == f"Patient/{pid}"
        assert client.read("Patient", "MRN-100") is None  # no Patient/<MRN> was invented


def test_no_match_logical_reference_or_conditional_create(fhir_server: Any) -> None:
    with FhirClient(fhir_server.url) as client:
        ref = deliver(client, _payload("MRN-200", "1.2.826.0.1.200", create=False))
        report = client.read(*ref.split("/"))
        assert report["subject"] == {"identifier": {"system": MRN_SYSTEM, "value": "MRN-200"}}
        assert client.count("Patient", {"identifier": f"{MRN_SYSTEM}|MRN-200"}) == 0
        # configured to create: one Patient holding only the identifier, however often it is delivered
        for study in ("1.2.826.0.1.201", "1.2.826.0.1.202", "1.2.826.0.1.202"):
            ref = deliver(client, _payload("MRN-201", study, create=True))
        (patient,) = client.search("Patient", {"identifier": f"{MRN_SYSTEM}|MRN-201"})
        assert patient["id"] != "MRN-201" and set(patient) <= {"resourceType", "id", "identifier", "meta"}
        assert client.count("DiagnosticReport", {"subject": f"Patient/{patient['id']}"}) == 2
