"""Fuzz ``radclip.io.load_image`` (DICOM, preamble-less DICOM, PNG, JPEG): a contract image or a RadclipInputError."""

from __future__ import annotations

import harness_contract as contract  # noqa: F401  (puts src/ on the path)

from radclip.io.contract import LoadedImage
from radclip.io.loader import load_image

# Small enough that a header claiming a huge image is refused before decoding, as the service would.
MAX_PIXELS = 4_000_000


def _target(data: bytes) -> LoadedImage:
    image = load_image(data, max_pixels=MAX_PIXELS, filename_hint="fuzz-input")
    if not isinstance(image, LoadedImage):
        raise contract.Finding(f"load_image returned {type(image).__name__}, not a LoadedImage")
    return image


def one_input(data: bytes) -> None:
    contract.check(_target, data, contract.input_errors())


if __name__ == "__main__":
    contract.run(one_input)
