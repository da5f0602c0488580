"""docs/image-contract.md stays true to the code: error table, worked window example, tensor shape."""

from __future__ import annotations

import inspect
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radclip.io import errors
from radclip.io.contract import CONTRACT_SIZE, to_contract_tensor
from radclip.io.loader import load_image

DOC = Path(__file__).resolve().parents[2] / "docs" / "image-contract.md"


def _doc() -> str:
    if not DOC.is_file():
        pytest.skip(f"{DOC} not found")
    return DOC.read_text()


def test_doc_lists_every_error_type() -> None:
    text = _doc()
    names = [n for n, obj in vars(errors).items() if inspect.isclass(obj) and obj.__module__ == errors.__name__ and n != "RadclipInputError"]
    assert len(names) == 8
    table = {m.group(1) for m in re.finditer(r"^\| `(\w+Error)`", text, flags=re.MULTILINE)}
    assert sorted(table) == sorted(names)


def test_doc_window_example_matches_loader() -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    assert "1536 → 0, 2048 → 0.50049, 2559 → 1" in _doc()
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "CR"
    ds.set_pixel_data(np.array([[1536, 2048, 2559]], dtype=np.uint16), "MONOCHROME2", 12)
    ds.WindowCenter, ds.WindowWidth = 2048, 1024
    bio = io.BytesIO()
    ds.save_as(bio, enforce_file_format=True)
    px = load_image(bio.getvalue()).pixels
    np.testing.assert_allclose(px, [[0.0, 0.50049, 1.0]], atol=5e-6)
    assert pydicom.dcmread(io.BytesIO(bio.getvalue())).Modality == "CR"


def test_loaded_non_square_png_to_contract_tensor_is_centre_crop() -> None:
    # 40 rows x 100 columns: left third black, middle 40 columns white, right black
    arr = np.zeros((40, 100), dtype=np.uint8)
    arr[:, 30:70] = 255
    bio = io.BytesIO()
    Image.fromarray(arr).save(bio, format="PNG")
    px = load_image(bio.getvalue()).pixels
    square = to_contract_tensor(px, 40)
    assert square.shape == (1, 40, 40) and square.dtype == np.float32
    assert square.min() == 1.0  # the centre crop keeps exactly the white 40 columns
    assert to_contract_tensor(px).shape == (1, CONTRACT_SIZE, CONTRACT_SIZE)
