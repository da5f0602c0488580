"""The readable report: only findings above their operating point, one conclusion line, Device + Provenance."""

from __future__ import annotations

import math

import pytest

from radclip.integrations.fhir_context import PatientStudyContext
from radclip.integrations.fhir_provenance import AIAST, SHA256_SYSTEM, ModelIdentity
from radclip.integrations.fhir_report import (
    SNOMED,
    ReportFinding,
    ReportOptions,
    build_readable_report,
    report_findings,
)
from radclip.integrations.operating_points import triage_operating_points

MODELS = [
    ModelIdentity("triage", "radclip-mobilenetv2-nih", "0.1.0", "09" * 32),
    ModelIdentity("clip", "radclip-medclip-mini", "0.2.0", "ab" * 32),
]
CTX = PatientStudyContext(patient_id="MRN-4711", study_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5")


def _findings() -> list[ReportFinding]:
    return [ReportFinding("Effusion", 0.81, "triage"), ReportFinding("Cardiomegaly", 0.49, "triage"),
            ReportFinding("Mass", 0.30, "triage", threshold=0.25), ReportFinding("pneumomediastinum", 0.9, "zero-shot", threshold=math.inf),
            ReportFinding("rib_fracture", 0.1, "zero-shot")]  # fmt: skip


def _by_type(bundle: dict) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return out


def test_only_findings_above_their_operating_point_become_observations() -> None:
    res = _by_type(
        build_readable_report(_findings(), CTX, MODELS, ReportOptions(mrn_system="urn:oid:1.2.36.1"))
    )
    report = res["DiagnosticReport"][0]
    names = [o["code"]["text"] for o in res["Observation"]]
    assert names == ["Pleural effusion", "Mass"]  # 0.81 >= 0.5 and 0.30 >= its own 0.25; best first
    assert [r["reference"] for r in report["result"]] == [f"urn:uuid:{o['id']}" for o in res["Observation"]]
    assert report["conclusion"] == ("AI triage (radclip-mobilenetv2-nih v0.1.0): possible pleural effusion (0.81), "
                                    "possible mass (0.30). No other finding above threshold (3 checked).")  # fmt: skip
    assert report["conclusionCode"] == [
        {
            "coding": [{"system": SNOMED, "code": "60046008", "display": "Pleural effusion"}],
            "text": "Pleural effusion",
        }
    ]
    # the patient by identifier, never Patient/<MRN>
    assert report["subject"] == {"identifier": {"system": "urn:oid:1.2.36.1", "value": "MRN-4711"}}
    assert "Patient/MRN-4711" not in str(res)
    ops = {
        c["code"]["text"]: c.get("valueQuantity", {}).get("value") for c in res["Observation"][1]["component"]
    }
    assert ops["confidence"] == 0.3 and ops["operating point"] == 0.25


def test_device_and_provenance_name_the_models_as_author() -> None:
    res = _by_type(build_readable_report(_findings(), CTX, MODELS))
    devices = res["Device"]
    assert [(d["deviceName"][0]["name"], d["version"][0]["value"], d["identifier"][0]) for d in devices] == [
        ("radclip-mobilenetv2-nih", "0.1.0", {"system": SHA256_SYSTEM, "value": "09" * 32}),
        ("radclip-medclip-mini", "0.2.0", {"system": SHA256_SYSTEM, "value": "ab" * 32}),
    ]
    (prov,) = res["Provenance"]
    targets = {t["reference"] for t in prov["target"]}
    assert targets == {f"urn:uuid:{r['id']}" for r in res["DiagnosticReport"] + res["Observation"]}
    assert [a["who"]["reference"] for a in prov["agent"]] == [f"urn:uuid:{d['id']}" for d in devices]
    assert {a["type"]["coding"][0]["code"] for a in prov["agent"]} == {"author"}
    for r in res["DiagnosticReport"] + res["Observation"]:
        assert r["meta"]["security"] == [AIAST]


def test_nothing_above_threshold_and_the_detail_panel() -> None:
    quiet = [ReportFinding("Effusion", 0.2, "triage"), ReportFinding("Nodule", 0.1, "triage")]
    res = _by_type(build_readable_report(quiet, CTX, MODELS))
    assert "Observation" not in res and "conclusionCode" not in res["DiagnosticReport"][0]
    assert (
        res["DiagnosticReport"][0]["conclusion"]
        == "AI triage (radclip-mobilenetv2-nih v0.1.0): no finding above threshold (2 checked)."
    )
    detailed = _by_type(build_readable_report(quiet, CTX, MODELS, ReportOptions(detail=True)))
    panel = [o for o in detailed["Observation"] if "hasMember" in o]
    assert len(panel) == 1 and len(panel[0]["hasMember"]) == 2 and len(detailed["Observation"]) == 3
    assert detailed["DiagnosticReport"][0]["result"] == [{"reference": f"urn:uuid:{panel[0]['id']}"}]
    assert all(o["valueBoolean"] is False for o in detailed["Observation"] if "hasMember" not in o)


def test_operating_points_from_the_card_and_uncalibrated_zero_shot() -> None:
    assert triage_operating_points(("Effusion", "Mass"), {"operating_points": {"Mass": 0.3}}) == {
        "Effusion": 0.5,
        "Mass": 0.3,
    }
    assert triage_operating_points(("Effusion",), {"xrv_op_thresholds": {"Effusion": 0.12}}) == {
        "Effusion": 0.12
    }
    assert triage_operating_points(("Effusion",), {"operating_points": {"Effusion": float("nan")}}) == {
        "Effusion": 0.5
    }

    class Screened:
        def __init__(self, name: str, conf: float, calibrated: bool) -> None:
            self.name, self.confidence, self.calibrated, self.suppressed = name, conf, calibrated, False

    items = report_findings(
        ["Effusion"],
        [0.6],
        [Screened("a", 0.7, True), Screened("b", 0.99, False), Screened("Effusion", 0.9, True)],
    )
    assert [(f.name, f.present) for f in items] == [("Effusion", True), ("a", True), ("b", False)]


@pytest.mark.parametrize("name", ["Pleural_Thickening", "no_finding"])
def test_words_read_as_a_sentence(name: str) -> None:
    assert ReportFinding(name, 0.9, "triage").words == name.replace("_", " ").lower()
