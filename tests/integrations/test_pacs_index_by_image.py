"""The PACS path indexes images, not studies: a PA and a lateral of one study are two records of that study."""

from __future__ import annotations

from typing import Any

import numpy as np

STUDY = "1.2.826.0.1.3680043.8.498.4242"


def _image(seed: int, sop: str, view: str) -> Any:
    from radclip.io.contract import ImageMeta, LoadedImage

    pixels = np.random.default_rng(seed).random((96, 96), dtype=np.float32)
    meta = ImageMeta(source_format="dicom", photometric="MONOCHROME2", original_shape=(96, 96), view_position=view,
                     modality="DX", patient_id="radclip-by-image", study_instance_uid=STUDY,
                     series_instance_uid=f"{STUDY}.1", sop_instance_uid=sop, study_date="20240102")  # fmt: skip
    return LoadedImage(pixels, meta)


def test_a_pa_and_a_lateral_of_one_study_are_both_indexed(pipeline: Any) -> None:
    from sqlalchemy import select

    from radclip.engine import db

    index = pipeline.parts.index
    before = index.index.live
    pa = pipeline.process(_image(1, f"{STUDY}.1.1", "PA"), "test:pa")
    lateral = pipeline.process(_image(2, f"{STUDY}.1.2", "LL"), "test:lateral")
    again = pipeline.process(_image(1, f"{STUDY}.1.1", "PA"), "test:pa-again")  # the same image re-sent
    assert (pa.indexed, lateral.indexed, again.indexed) == (True, True, False)
    assert index.index.live == before + 2
    with index.engine.connect() as conn:
        rows = conn.execute(
            select(db.IndexItem.study_id, db.IndexItem.instance_id, db.IndexItem.view).where(
                db.IndexItem.study_id == STUDY
            )
        ).all()
    assert sorted(rows) == [(STUDY, f"{STUDY}.1.1", "PA"), (STUDY, f"{STUDY}.1.2", "LL")]
    pngs = sorted(p.name for p in pipeline.image_dir.glob(f"{STUDY}*.png"))
    assert pngs == [f"{STUDY}.1.1.png", f"{STUDY}.1.2.png"]  # one header-free PNG per image
