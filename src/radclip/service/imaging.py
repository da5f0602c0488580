"""From an upload to a contract tensor, off the event loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radclip.io.contract import LoadedImage, to_contract_tensor
from radclip.service.schemas import ImageFacts
from radclip.service.uploads import Upload


@dataclass(frozen=True)
class DecodedUpload:
    image: LoadedImage
    contract: np.ndarray  # (1, S, S)

    def at_size(self, size: int) -> np.ndarray:
        """The contract tensor at another model's input size (from the decoded pixels, not the resized ones)."""
        return to_contract_tensor(self.image.pixels, size)


def decode_upload(upload: Upload, size: int, max_pixels: int) -> DecodedUpload:
    """Decode with the one ingestion path; raises ``RadclipInputError`` subclasses on bad input."""
    from radclip.io.loader import load_image

    image = load_image(upload.data, max_pixels=max_pixels, filename_hint=upload.filename)
    return DecodedUpload(image, to_contract_tensor(image.pixels, size))


def image_facts(image: LoadedImage) -> ImageFacts:
    m = image.meta
    return ImageFacts(
        source_format=m.source_format, photometric=m.photometric, original_shape=m.original_shape,
        view_position=m.view_position, modality=m.modality, patient_sex=m.patient_sex, patient_age_years=m.patient_age_years,
    )
