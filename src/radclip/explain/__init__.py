"""Explanations over the one shared triage model: CAM and Grad-CAM, and PNG overlays."""
