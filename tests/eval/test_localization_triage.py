"""Pointing game and IoU on hand-made maps and boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radclip.eval.localization import box_mask, pointing_hit, read_boxes, thresholded_iou


def test_box_mask_scaling() -> None:
    m = box_mask([(64.0, 32.0, 64.0, 32.0)], size=128, scale=0.5)
    assert m.sum() == 32 * 16 and m[16, 32] and not m[15, 32] and not m[32, 64]


def test_pointing_and_iou() -> None:
    heat = np.zeros((10, 10))
    heat[2:4, 2:6] = 1.0
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:4, 2:4] = True
    assert pointing_hit(heat, mask)
    assert thresholded_iou(heat, mask) == pytest.approx(4 / 8)
    assert not pointing_hit(heat, ~mask & (np.arange(10)[:, None] > 5))


def test_read_boxes_aliases(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("image_id,label,x,y,w,h\na,Infiltrate,1,2,3,4\na,Infiltrate,5,6,7,8\n")
    boxes = read_boxes(p)
    assert boxes == {("a", "Infiltration"): [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]}
