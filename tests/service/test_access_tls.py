"""HTTPS: ``radclip serve --ssl-certfile --ssl-keyfile`` on loopback with a certificate made in the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "radclip-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_serve_speaks_https_on_loopback(tmp_path: Path) -> None:
    from radclip.service.background import free_port

    cert, key = _self_signed(tmp_path)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RADCLIP_HOME": str(tmp_path / "home"), "RADCLIP_INDEX_ON_START": "0",
           "RADCLIP_TRIAGE_MODEL": str(tmp_path / "none.safetensors"), "RADCLIP_CLIP_MODEL": str(tmp_path / "none.safetensors"),
           "RADCLIP_SEED_CONDITIONS": "0", "RADCLIP_LOG_LEVEL": "WARNING"}  # no models: start-up is quick  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "radclip.cli",
        "serve",
        "--port",
        str(port),
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, r = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(
                    f"https://127.0.0.1:{port}/healthz",
                    verify=ssl.create_default_context(cafile=str(cert)),
                    timeout=2,
                )
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert r is not None and r.status_code == 200, (
            proc.stdout.read().decode()[-2000:] if proc.poll() is not None else "no answer"
        )
        assert r.json() == {"status": "ok"} and r.headers["x-content-type-options"] == "nosniff"
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
        with pytest.raises(httpx.ConnectError):  # and the certificate is really checked
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tls_options_say_what_is_missing(tmp_path: Path) -> None:
    from radclip.commands.serve import tls_options

    with pytest.raises(ValueError, match="go together"):
        tls_options(tmp_path / "c.pem", None)
    with pytest.raises(ValueError, match="--ssl-keyfile .*no such file"):
        (tmp_path / "c.pem").write_text("x")
        tls_options(tmp_path / "c.pem", tmp_path / "missing.pem")
