"""Training loops, losses and schedules for the triage network and the image-text model (beside the data flow)."""
