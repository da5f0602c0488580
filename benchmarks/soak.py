"""Soak: a real ``radclip serve`` on loopback under N concurrent clients for a bounded time (issue 17, section 3).

The mix: /screen with DICOM and PNG, /retrieve, /similar, condition registration and study ingest.
Records throughput, p50/p99 per interval, every error, and the server's RSS and open files sampled
every ``--sample-s`` seconds; writes ``--out`` (default benchmarks/results/soak.json). Pass criteria:
0 errors; p99 of the last window within 20% of the first (window: 5 minutes, or a quarter of a
shorter run); RSS slope over the second half of the run under 1 MB/min (no leak). Tiny seeded models
unless ``--triage-model``/``--clip-model`` are given. Stops by itself after ``--duration-s``.

    python benchmarks/soak.py --duration-s 1800        # the 30-minute run
    python benchmarks/soak.py --duration-s 60          # the short run of make test
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIX = ["screen-png", "screen-dicom", "retrieve", "similar", "screen-png", "retrieve", "register", "ingest"]


def png_bytes(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((size, size)) * 255).astype(np.uint8), mode="L").save(
        buf, format="PNG"
    )
    return buf.getvalue()


def dicom_bytes(seed: int) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = (
        ExplicitVRLittleEndian,
        DigitalXRayImageStorageForPresentation,
    )
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        "DX",
    )
    ds.StudyInstanceUID = generate_uid()
    ds.set_pixel_data(
        np.random.default_rng(seed).integers(0, 4096, (64, 64)).astype(np.uint16), "MONOCHROME2", 12
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def tiny_models(folder: Path) -> tuple[Path, Path]:
    """Seeded random triage and CLIP weights with cards (as the tests make them): seconds on CPU."""
    from radclip.models.tiny_artifacts import write_tiny_models

    return write_tiny_models(folder, version="soak-0")


def start_server(work: Path, models: tuple[Path, Path]) -> tuple[subprocess.Popen[bytes], str]:
    corpus = work / "corpus"
    corpus.mkdir()
    for i in range(24):
        (corpus / f"case{i:02d}.png").write_bytes(png_bytes(100 + i))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RADCLIP_HOME": str(work / "home"), "RADCLIP_CORPUS": str(corpus),
           "RADCLIP_TRIAGE_MODEL": str(models[0]), "RADCLIP_CLIP_MODEL": str(models[1]), "RADCLIP_LOG_LEVEL": "WARNING",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - the server writes to it until it stops
    proc = subprocess.Popen([sys.executable, "-m", "radclip.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/readyz", timeout=5).json()["index"]["state"] == "ready":
                return proc, base
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"radclip serve did not become ready; see {work / 'serve.log'}")


def one_request(client: httpx.Client, op: str, n: int) -> int:
    png = {"headers": {"Content-Type": "image/png"}}
    if op == "screen-png":
        return client.post("/api/v1/screen", content=png_bytes(n % 500), **png).status_code
    if op == "screen-dicom":
        return client.post(
            "/api/v1/screen", content=dicom_bytes(n % 200), headers={"Content-Type": "application/dicom"}
        ).status_code
    if op == "retrieve":
        return client.post(
            "/api/v1/retrieve", json={"query": f"left pleural effusion {n % 50}", "top_k": 5}
        ).status_code
    if op == "similar":
        return client.post(
            "/api/v1/similar", params={"top_k": 5}, content=png_bytes(n % 300), **png
        ).status_code
    if op == "register":
        body = {"name": f"soak_condition_{n % 4}", "prompts": [f"a chest x-ray with soak finding {n % 4}"]}
        return client.post("/api/v1/register-condition", json=body).status_code
    r = client.post(
        "/api/v1/studies", params={"study_id": f"soak-{n}"}, content=png_bytes(1_000_000 + n), **png
    )
    return r.status_code


def client_loop(
    base: str, worker: int, until: float, log: list[tuple[float, str, int, float]], t0: float
) -> None:
    with httpx.Client(base_url=base, timeout=120) as client:
        for k in itertools.count():
            if time.monotonic() >= until:
                return
            op, n = MIX[(worker + k) % len(MIX)], worker * 1_000_000 + k
            start = time.monotonic()
            try:
                status = one_request(client, op, n)
            except httpx.TransportError:
                status = 0  # a dropped connection is an error too
            log.append((start - t0, op, status, time.monotonic() - start))


def sample_loop(
    pid: int, every_s: float, stop: threading.Event, out: list[dict[str, float]], t0: float
) -> None:
    while not stop.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            out.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_kb / 1024, 1),
                        "open_files": len(os.listdir(f"/proc/{pid}/fd"))})  # fmt: skip
        except (OSError, StopIteration):
            return
        stop.wait(every_s)


def summarise(
    log: list[tuple[float, str, int, float]],
    samples: list[dict[str, float]],
    duration: float,
    sample_s: float,
) -> dict[str, Any]:
    ok = {"register": (200, 201), "ingest": (200, 201)}
    errors = [(round(t, 1), op, st) for t, op, st, _ in log if st not in ok.get(op, (200,))]
    window = min(300.0, duration / 4)
    lat = np.array([d for *_, d in log]) * 1000
    times = np.array([t for t, *_ in log])

    def p(q: float, mask: np.ndarray) -> float:
        return round(float(np.percentile(lat[mask], q)), 1) if mask.any() else float("nan")

    first, last = times < window, times >= duration - window
    drift = p(99, last) / p(99, first) - 1 if first.any() and last.any() else float("nan")
    series = [{"t_s": float(s), "requests": int(((times >= s) & (times < s + sample_s)).sum()),
               "p50_ms": p(50, (times >= s) & (times < s + sample_s)), "p99_ms": p(99, (times >= s) & (times < s + sample_s))}
              for s in np.arange(0, duration, sample_s)]  # fmt: skip
    half = [s for s in samples if s["t_s"] >= duration / 2]
    slope = (
        float(np.polyfit([s["t_s"] / 60 for s in half], [s["rss_mb"] for s in half], 1)[0])
        if len(half) >= 2
        else float("nan")
    )
    by_op = {op: int(sum(1 for _, o, _, _ in log if o == op)) for op in dict.fromkeys(MIX)}
    return {
        "requests": len(log), "throughput_rps": round(len(log) / duration, 2), "by_operation": by_op,
        "errors": len(errors), "error_examples": errors[:20], "p50_ms": p(50, times >= 0), "p99_ms": p(99, times >= 0),
        "p99_first_window_ms": p(99, first), "p99_last_window_ms": p(99, last), "window_s": window,
        "p99_drift": round(drift, 3), "rss_slope_mb_per_min_second_half": round(slope, 2), "series": series, "samples": samples,
        "pass": {"no_errors": not errors, "p99_drift_under_20pct": bool(drift < 0.2), "rss_slope_under_1mb_per_min": bool(slope < 1.0)},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=1800)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    ap.add_argument("--triage-model", type=Path)
    ap.add_argument("--clip-model", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="radclip-soak-") as tmp:
        work = Path(tmp)
        models = (
            (args.triage_model, args.clip_model)
            if args.triage_model and args.clip_model
            else tiny_models(work)
        )
        proc, base = start_server(work, models)
        log: list[tuple[float, str, int, float]] = []
        samples: list[dict[str, float]] = []
        stop, t0 = threading.Event(), time.monotonic()
        sampler = threading.Thread(
            target=sample_loop, args=(proc.pid, args.sample_s, stop, samples, t0), daemon=True
        )
        sampler.start()
        workers = [
            threading.Thread(target=client_loop, args=(base, w, t0 + args.duration_s, log, t0))
            for w in range(args.clients)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        duration = time.monotonic() - t0
        stop.set()
        sampler.join(timeout=args.sample_s + 5)
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(timeout=60)
    result = {"duration_s": round(duration, 1), "clients": args.clients, "server_alive_at_end": alive,
              "models": "tiny seeded" if not args.triage_model else [str(m) for m in models],
              **summarise(log, samples, duration, args.sample_s)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("series", "samples")}, indent=1))
    return 0 if result["pass"]["no_errors"] and alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
