"""Helpers shared by the model-operations tests."""

from __future__ import annotations

SHIPPED = "radclip-mobilenetv2-nih"


def png(seed: int, size: int = 96) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size, size)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
    return buf.getvalue()
