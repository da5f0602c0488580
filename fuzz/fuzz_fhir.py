"""Fuzz the FHIR Patient / ImagingStudy form fields of ``/screen``: a context, or a 4xx ProblemError."""

from __future__ import annotations

import harness_contract as contract

from radclip.integrations.fhir_context import PatientStudyContext
from radclip.io.contract import ImageMeta
from radclip.service.routers.screen import _context

# The DICOM facts a real upload would merge under the FHIR context (study date drives the age).
META = ImageMeta("dicom", "MONOCHROME2", (64, 64), study_date="20200115", patient_sex="F", view_position="PA")


def _target(data: bytes) -> PatientStudyContext:
    # The first byte picks the form field(s), as a client may send either or both (then split at a newline).
    which, text = (data[0] % 3 if data else 0), data[1:].decode("utf-8", "replace")
    patient, _, study = text.partition("\n")
    fields = {
        0: {"patient": text},
        1: {"imaging_study": text},
        2: {"patient": patient, "imaging_study": study},
    }[which]
    result = _context(fields, META)
    if not isinstance(result, PatientStudyContext):
        raise contract.Finding(f"context is {type(result).__name__}, not a PatientStudyContext")
    return result


def one_input(data: bytes) -> None:
    contract.check(_target, data, contract.input_errors())


if __name__ == "__main__":
    contract.run(one_input)
