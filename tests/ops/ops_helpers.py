"""Helpers shared by the model-operations tests."""

from __future__ import annotations

from typing import Any

import httpx

SHIPPED = "radclip-mobilenetv2-nih"


def png(seed: int, size: int = 96) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size, size)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def call(srv: Any, method: str, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
    headers = {"X-API-Key": srv.keys[role], **kw.pop("headers", {})}
    return httpx.request(method, srv.url + path, headers=headers, timeout=120, **kw)


def screen(srv: Any, seed: int) -> dict[str, Any]:
    r = call(
        srv, "POST", "/api/v1/screen", "reader", content=png(seed), headers={"Content-Type": "image/png"}
    )
    assert r.status_code == 200, r.text
    return r.json()
