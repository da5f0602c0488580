"""Model code: registry and cards, triage networks, image-text towers, weight loading.

Importing this package does not import torch; the submodules that need it do.
"""
