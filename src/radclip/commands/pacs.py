"""``radclip pacs``: hospital integration. Receive (C-STORE) or pull (DICOMweb) images, screen them, send FHIR results.

  radclip pacs listen [--port 11112 --ae-title RADCLIP --host 127.0.0.1] [--fhir URL]
  radclip pacs sync --dicomweb URL [--once] [--interval 30] [--fhir URL]
  radclip pacs deliver --fhir URL      # send results queued while the FHIR server was down
  radclip pacs status                  # outbox / quarantine / sync counts (no patient data)

Results are always queued in $RADCLIP_HOME/integrations/outbox.db first; with --fhir (or
RADCLIP_FHIR_URL) they are delivered as soon as the server accepts them. With
RADCLIP_PACS_RETURN_AE or RADCLIP_PACS_RETURN_DICOMWEB, a DICOM SR and a heat-map image of each
screened image go back to the PACS (queued in $RADCLIP_HOME/pacs/dicom-outbox/ until accepted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HELP = "hospital integration: C-STORE listener, DICOMweb sync, FHIR delivery of results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)
    fhir_help = (
        "FHIR R4 base URL to deliver results to (default RADCLIP_FHIR_URL; unset: results stay queued)"
    )
    listen = sub.add_parser("listen", help="run a DICOM C-STORE SCP that screens every image it receives")
    listen.add_argument("--port", type=int, default=11112, help="DICOM port to listen on (default 11112)")
    listen.add_argument(
        "--ae-title", default="RADCLIP", help="our AE title; senders must call it (default RADCLIP)"
    )
    listen.add_argument(
        "--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 for the network)"
    )
    listen.add_argument(
        "--max-seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)"
    )
    sync = sub.add_parser(
        "sync", help="pull new images from a DICOMweb server (QIDO-RS + WADO-RS) and screen them"
    )
    sync.add_argument(
        "--dicomweb", required=True, help="DICOMweb base URL, e.g. http://127.0.0.1:8042/dicom-web"
    )
    sync.add_argument("--once", action="store_true", help="one pass, then exit (default: poll forever)")
    sync.add_argument("--interval", type=float, default=30.0, help="seconds between passes (default 30)")
    for p in (listen, sync):
        p.add_argument("--fhir", default=os.environ.get("RADCLIP_FHIR_URL"), help=fhir_help)
        p.add_argument(
            "--fhir-context",
            action="store_true",
            help="read Patient/ImagingStudy context from the FHIR server",
        )
    deliver = sub.add_parser("deliver", help="deliver queued results to the FHIR server now")
    deliver.add_argument("--fhir", default=os.environ.get("RADCLIP_FHIR_URL"), help=fhir_help)
    sub.add_parser("status", help="print outbox, quarantine and sync counts as JSON (no patient data)")


def _setup_logging(level: str) -> None:
    import logging

    from radclip.integrations.phi import quiet_http_loggers

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_http_loggers()
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _fhir_client(url: str | None, settings: Any) -> Any:
    """A FhirClient for ``url`` with the RADCLIP_FHIR_* authentication; None without a URL."""
    from radclip.integrations.fhir_auth import auth_from_settings
    from radclip.integrations.fhir_client import FhirClient, FhirClientConfig

    url = url or settings.fhir_url
    return FhirClient(FhirClientConfig(url, auth=auth_from_settings(settings))) if url else None


def _stack(args: argparse.Namespace, settings: Any) -> tuple[Any, Any, Any, Any]:
    """(pipeline, ingestor, queue, fhir client or None)."""
    from radclip.integrations.delivery_queue import DeliveryQueue
    from radclip.integrations.ingest import Ingestor
    from radclip.integrations.pipeline import build_pipeline

    client = _fhir_client(args.fhir, settings)
    context_fn = None
    if client is not None and args.fhir_context:
        from radclip.integrations.fhir_exchange import fetch_context

        context_fn = lambda meta: fetch_context(client, meta, settings.fhir_mrn_system)  # noqa: E731
    pipeline = build_pipeline(settings, context_fn=context_fn)
    queue = DeliveryQueue.for_home(settings.home)
    from radclip.integrations.dicom_return import DicomReturn

    dicom_return = DicomReturn.from_settings(settings)
    if dicom_return is not None:
        dicom_return.flush()  # objects left from a run while the PACS was down
    ingestor = Ingestor(pipeline, settings.home, queue, max_pixels=settings.max_image_pixels,
                        create_patient=settings.fhir_create_patient, dicom_return=dicom_return)  # fmt: skip
    return pipeline, ingestor, queue, client


def _stop_on_signals(stop: Any) -> None:
    """SIGTERM (systemd, Kubernetes, ``kill``) and SIGINT (Ctrl-C) end the listener gracefully.

    SIGINT keeps its inherited disposition when it is ignored (a shell starts background jobs that
    way, and so does ``nohup``-style supervision): only SIGTERM is taken over then.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda *_: stop.set())


def _listen(args: argparse.Namespace, settings: Any) -> int:
    import threading

    from radclip.integrations.delivery_queue import DeliveryWorker
    from radclip.integrations.pacs_scp import ScpConfig, StoreScp

    pipeline, ingestor, queue, client = _stack(args, settings)
    worker = DeliveryWorker(queue, client, interval_s=2.0).start() if client else None
    scp = StoreScp(ingestor, ScpConfig(ae_title=args.ae_title, host=args.host, port=args.port)).start()
    print(
        json.dumps({"listening": f"{args.host}:{scp.port}", "ae_title": args.ae_title, "fhir": bool(client)}),
        flush=True,
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        stop.wait(args.max_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        scp.stop()
        if worker:
            worker.stop()
        pipeline.close()
    print(json.dumps({"received": dict(ingestor.counters), "outbox": queue.counts()}))
    return 0


def _sync(args: argparse.Namespace, settings: Any) -> int:
    import logging
    import time

    from radclip.integrations.dicomweb_sync import DicomWebSync, DicomWebUnavailable

    pipeline, ingestor, queue, client = _stack(args, settings)
    sync = DicomWebSync.for_home(args.dicomweb, ingestor, settings.home)
    status = 0
    try:
        while True:
            try:
                stats = sync.sync_once()
                status = 0
            except DicomWebUnavailable as exc:
                logging.getLogger(__name__).warning("%s", exc)
                stats, status = None, 3
            delivered = queue.deliver_pending(client) if client else None
            print(json.dumps({"sync": stats.__dict__ if stats else None, "delivery": delivered.__dict__ if delivered else None,
                              "outbox": queue.counts()}), flush=True)  # fmt: skip
            if args.once:
                return status
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        sync.close()
        pipeline.close()


def _deliver(args: argparse.Namespace, settings: Any) -> int:
    from radclip.integrations.delivery_queue import DeliveryQueue

    try:
        client = _fhir_client(args.fhir, settings)
    except (ValueError, OSError) as exc:  # incomplete OAuth2 settings, unreadable private key
        print(f"radclip pacs deliver: {exc}", file=sys.stderr)
        return 2
    if client is None:
        print(
            "radclip pacs deliver: no FHIR server; pass --fhir URL or set RADCLIP_FHIR_URL", file=sys.stderr
        )
        return 2
    queue = DeliveryQueue.for_home(settings.home)
    with client:
        stats = queue.deliver_pending(client)
    print(json.dumps({**stats.__dict__, "outbox": queue.counts()}))
    return 3 if stats.server_down else 0


def _status(settings: Any) -> int:
    import sqlite3

    from radclip.integrations.delivery_queue import DeliveryQueue

    home = settings.home
    quarantine = sorted((home / "quarantine").glob("*.dcm")) if (home / "quarantine").is_dir() else []
    sync_db = home / "integrations" / "dicomweb_sync.db"
    synced = 0
    if sync_db.is_file():
        synced = int(sqlite3.connect(sync_db).execute("SELECT COUNT(*) FROM instances").fetchone()[0])
    outbox_db = home / "integrations" / "outbox.db"
    outbox = (
        DeliveryQueue(outbox_db).counts()
        if outbox_db.is_file()
        else {"pending": 0, "delivered": 0, "failed": 0}
    )
    dicom_outbox = home / "pacs" / "dicom-outbox"
    dicom_pending = len(list(dicom_outbox.glob("*.dcm"))) if dicom_outbox.is_dir() else 0
    print(json.dumps({"outbox": outbox, "quarantined": len(quarantine), "dicom_results_pending": dicom_pending,
                      "quarantine_dir": str(home / "quarantine"), "dicomweb_instances_done": synced}))  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    from radclip.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"radclip pacs: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    if args.pacs_command == "status":
        return _status(settings)
    if args.pacs_command == "deliver":
        return _deliver(args, settings)
    try:
        return _listen(args, settings) if args.pacs_command == "listen" else _sync(args, settings)
    except (OSError, RuntimeError, ValueError) as exc:  # model not found, port in use, bad URL...
        print(f"radclip pacs {args.pacs_command}: {exc}", file=sys.stderr)
        return 1
