"""What radclip may write about a patient outside the clinical systems: pseudonyms, never names.

Logs, metrics, the retrieval index and the integration state databases carry only
:func:`pseudonym` values (keyed HMAC-SHA256, truncated) of patient ids. DICOM UIDs are
kept as they are: they are the identifiers needed to link back to the PACS study and are
not patient-identifying on their own. Patient names are never read by the integration code.

The key and the pseudonym function live one floor down in :mod:`radclip.io.pseudonyms` (the
engine stores manifest patient ids through them too); they are re-exported here.
"""

from __future__ import annotations

from radclip.io.pseudonyms import KEY_ENV, KEY_FILE, PSEUDONYM_CHARS, Pseudonymiser, phi_key

__all__ = ["KEY_ENV", "KEY_FILE", "PSEUDONYM_CHARS", "Pseudonymiser", "phi_key", "quiet_http_loggers"]

HTTP_LOGGERS = ("httpx", "httpcore")  # they log request URLs, and FHIR search URLs carry patient ids


def quiet_http_loggers() -> None:
    """Keep URL-logging HTTP libraries at WARNING so patient ids in FHIR URLs stay out of the logs."""
    import logging

    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
