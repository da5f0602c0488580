"""Exception types for bad input. Each message says what was wrong and how to fix it."""

from __future__ import annotations


class RadclipInputError(ValueError):
    """Base class: the input cannot be turned into a contract image."""


class EmptyFileError(RadclipInputError):
    """The file has no bytes."""


class UnsupportedFormatError(RadclipInputError):
    """Neither DICOM nor a supported raster format (PNG, JPEG)."""


class CorruptImageError(RadclipInputError):
    """The container was recognised but its contents are truncated or damaged."""


class NotAnImageError(RadclipInputError):
    """A DICOM object that carries no pixel data (SR, presentation state, ...)."""


class MultiFrameError(RadclipInputError):
    """A multi-frame DICOM; radclip reads single radiographs."""


class UnsupportedModalityError(RadclipInputError):
    """A modality other than chest radiography (CT, MR, ...)."""


class ImageTooLargeError(RadclipInputError):
    """More pixels than the configured decompression-bomb guard allows."""


class MissingDependencyError(ImportError):
    """An optional dependency is needed for this input; the message gives the install command."""
