"""Mutated DICOMs that escaped as non-radclip exceptions (found by mutating synthetic files), replayed.

Each file in ``tests/io/regressions/`` is a mutation (byte flips, deletions, insertions) of a
3 KB synthetic DICOM. Before the fix each raised what its name says (a Rust panic from the RLE
decoder is a ``BaseException``, which even a catch-all ``except Exception`` misses); now each is a
:class:`RadclipInputError`, which the service maps to a 4xx.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pydicom")

from test_dicom_synthetic import make_dicom  # noqa: E402

from radclip.io.errors import CorruptImageError, RadclipInputError  # noqa: E402
from radclip.io.loader import load_image  # noqa: E402

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.dcm"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.stem)
def test_each_mutated_dicom_is_an_input_error(path: Path) -> None:
    with pytest.raises(RadclipInputError, match=r"re-export|send a DICOM"):
        load_image(path.read_bytes(), filename_hint=path.name)


def test_regression_corpus_is_present() -> None:
    assert {p.stem for p in REGRESSIONS} >= {"fuzz-byteslengthexception", "fuzz-notimplementederror",
                                              "fuzz-panicexception", "fuzz-typeerror"}  # fmt: skip


def test_a_damaged_vr_deep_in_the_header_is_a_corrupt_header() -> None:
    """pydicom converts elements lazily: an unknown VR used to surface from ViewPosition, read late."""
    data = make_dicom()
    element = b"\x18\x00\x01\x51CS"  # (0018,5101) ViewPosition, explicit VR "CS"
    assert data.count(element) == 1
    with pytest.raises(CorruptImageError, match=r"header cannot be parsed.*Unknown Value Representation"):
        load_image(data.replace(element, b"\x18\x00\x01\x51C:"))
