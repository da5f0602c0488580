"""Browser-facing hardening: security headers, CORS off unless configured, cross-site writes refused (CSRF)."""

from __future__ import annotations

from pathlib import Path

from tests.service.access_helpers import access_client

PNG_FORM = {"file": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")}


def test_cross_site_multipart_post_is_refused_in_the_open_local_run(tmp_path: Path) -> None:
    with access_client(tmp_path) as c:
        for headers in ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):  # fmt: skip
            r = c.post("/api/v1/studies", files=PNG_FORM, headers=headers)
            assert r.status_code == 403 and r.json()["type"].endswith("cross-site-write"), headers
            assert (
                "RADCLIP_CORS_ORIGINS" in r.json()["fix"] and r.headers["x-content-type-options"] == "nosniff"
            )
        # the page itself (same origin) and non-browser clients (no Origin) still write
        same = c.post(
            "/api/v1/studies",
            files=PNG_FORM,
            headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        )
        assert same.status_code not in (401, 403)
        assert c.post("/api/v1/studies", files=PNG_FORM).status_code not in (401, 403)
        assert (
            c.get("/api/v1/whoami", headers={"Origin": "https://evil.example"}).status_code == 200
        )  # reads: CORS decides


def test_headers_on_api_and_page_and_cors_off_by_default(tmp_path: Path) -> None:
    with access_client(tmp_path) as c:
        for path in ("/", "/api/v1/whoami", "/healthz", "/api/v1/nothing-here"):
            h = c.get(path, headers={"Origin": "https://evil.example"}).headers
            assert (
                "frame-ancestors 'none'" in h["content-security-policy"]
                and "unsafe-inline" not in h["content-security-policy"]
            )
            assert (
                h["x-content-type-options"] == "nosniff"
                and h["referrer-policy"] == "no-referrer"
                and h["x-frame-options"] == "DENY"
            )
            assert "access-control-allow-origin" not in h
        pre = c.options(
            "/api/v1/screen",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in pre.headers
        docs = c.get("/docs")  # offline reference instead of CDN-loaded Swagger UI
        assert docs.status_code == 200 and "/ui/js/docs.js" in docs.text and "cdn" not in docs.text.lower()
        assert c.get("/openapi.json").status_code == 200


def test_configured_origin_gets_cors_and_may_write(tmp_path: Path) -> None:
    with access_client(tmp_path, cors_origins="https://ris.hospital.example") as c:
        ok = {"Origin": "https://ris.hospital.example"}
        pre = c.options(
            "/api/v1/screen",
            headers={
                **ok,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert (
            pre.status_code == 200
            and pre.headers["access-control-allow-origin"] == "https://ris.hospital.example"
        )
        assert c.post(
            "/api/v1/studies", files=PNG_FORM, headers={**ok, "Sec-Fetch-Site": "cross-site"}
        ).status_code not in (401, 403)
        other = c.post("/api/v1/studies", files=PNG_FORM, headers={"Origin": "https://evil.example"})
        assert other.status_code == 403


def test_forwarded_for_is_believed_only_from_configured_proxies() -> None:
    from radclip.service.auth import client_address

    proxies = frozenset({"10.0.0.2"})
    fwd = [(b"x-forwarded-for", b"6.6.6.6, 192.168.4.20, 10.0.0.2")]
    assert (
        client_address({"client": ("10.0.0.2", 1), "headers": fwd}, proxies) == "192.168.4.20"
    )  # right-most non-proxy hop
    assert (
        client_address({"client": ("192.168.9.9", 1), "headers": fwd}, proxies) == "192.168.9.9"
    )  # not a proxy: header ignored
    assert client_address({"client": ("10.0.0.2", 1), "headers": []}, proxies) == "10.0.0.2"
