"""Metrics, evaluation commands, the report and the release gate (beside the data flow)."""
