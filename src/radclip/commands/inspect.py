"""``radclip inspect FILE``: load one image through the contract and print what radclip sees."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

HELP = "load a DICOM/PNG/JPEG through the image contract and print its facts (shape, range, view, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a DICOM, PNG or JPEG radiograph")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of aligned text")
    parser.add_argument("--size", type=int, default=None, help="contract tensor side to report (default 224)")
    parser.add_argument("--max-pixels", type=int, default=None, help="refuse larger images (default RADCLIP_MAX_IMAGE_PIXELS)")


def describe(image: Any, path: str, size: int) -> dict[str, Any]:
    """The facts ``inspect`` prints, as a JSON-ready dict (patient ID is never printed)."""
    from radclip.io.contract import to_contract_tensor

    pixels, meta = image.pixels, image.meta
    tensor = to_contract_tensor(pixels, size)
    return {
        "file": path,
        "source_format": meta.source_format,
        "shape": list(pixels.shape),
        "dtype": str(pixels.dtype),
        "min": round(float(pixels.min()), 6),
        "max": round(float(pixels.max()), 6),
        "mean": round(float(pixels.mean()), 6),
        "photometric": meta.photometric,
        "windowing": meta.windowing,
        "bits_stored": meta.bits_stored,
        "modality": meta.modality,
        "view_position": meta.view_position,
        "patient_sex": meta.patient_sex,
        "patient_age_years": None if meta.patient_age_years is None else round(meta.patient_age_years, 2),
        "patient_id_present": meta.patient_id is not None,
        "pixel_spacing_mm": list(meta.pixel_spacing_mm) if meta.pixel_spacing_mm else None,
        "study_date": meta.study_date,
        "study_instance_uid": meta.study_instance_uid,
        "sop_instance_uid": meta.sop_instance_uid,
        "contract_shape": list(tensor.shape),
        "contract_dtype": str(tensor.dtype),
        "contract_min": round(float(tensor.min()), 6),
        "contract_max": round(float(tensor.max()), 6),
        "notes": list(meta.extra.get("notes", [])),
    }


def _as_text(facts: dict[str, Any]) -> str:
    width = max(len(k) for k in facts)
    lines = []
    for key, value in facts.items():
        if key == "notes":
            value = "; ".join(value) if value else "-"
        lines.append(f"{key:<{width}}  {'-' if value is None else value}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from radclip.io.contract import CONTRACT_SIZE
    from radclip.io.errors import MissingDependencyError, RadclipInputError
    from radclip.io.loader import load_image

    try:
        with warnings.catch_warnings():
            # pydicom also warns about what the error line below reports; keep stderr to one line
            warnings.simplefilter("ignore", UserWarning)
            image = load_image(args.file, max_pixels=args.max_pixels)
    except (RadclipInputError, MissingDependencyError, OSError) as exc:
        print(f"radclip inspect: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    facts = describe(image, str(args.file), args.size or CONTRACT_SIZE)
    print(json.dumps(facts, indent=2) if args.json else _as_text(facts))
    return 0
