"""Hospital integration: FHIR context in and reports out, the FHIR client and outbox, PACS (C-STORE SCP, DICOMweb sync)."""
