"""radclip: chest X-ray triage, explanation, zero-shot screening and case retrieval.

Importing this package is cheap on purpose: torch, pydicom, FastAPI and friends are
imported by the modules that use them, never here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
