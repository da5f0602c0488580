"""A DICOM C-STORE SCP (pynetdicom): every image received is screened, triaged, indexed and queued for FHIR.

Accepts every storage SOP class with every transfer syntax pynetdicom knows, plus C-ECHO.
Each received dataset goes, as the encoded file bytes, through
:class:`radclip.integrations.ingest.Ingestor`: images that fail to decode are quarantined
with their SOP Instance UID logged and the sender gets status ``0xC000`` ("cannot
understand"), so the modality or PACS knows radclip did not screen it. Only the calling
AE title and address are logged about the sender; nothing from the dataset but UIDs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from radclip.integrations.ingest import Ingestor

log = logging.getLogger(__name__)
STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700


@dataclass(frozen=True)
class ScpConfig:
    ae_title: str = "RADCLIP"  # our AE title; senders must call it
    host: str = "127.0.0.1"  # bind address; 0.0.0.0 to accept modalities on the network
    port: int = 11112  # DICOM port (104 needs root)
    require_called_ae: bool = True  # refuse associations that call another AE title


class StoreScp:
    """See the module docstring. ``start()`` returns at once; ``stop()`` shuts the server down."""

    def __init__(self, ingestor: Ingestor, config: ScpConfig | None = None) -> None:
        self.ingestor = ingestor
        self.config = config or ScpConfig()
        self._server: Any | None = None

    def _handle_store(self, event: Any) -> int:
        sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "") or None
        assoc = event.assoc.requestor
        source = f"c-store:{assoc.ae_title}@{assoc.address}"
        try:
            data = event.encoded_dataset(include_meta=True)
        except (
            Exception
        ) as exc:  # the dataset could not even be re-encoded: nothing to quarantine but the fact
            log.error(
                "C-STORE of SOP Instance UID %s from %s: dataset unreadable (%s); refused",
                sop_uid,
                source,
                exc,
            )
            self.ingestor.counters["refused"] += 1
            return STATUS_CANNOT_UNDERSTAND
        try:
            result = self.ingestor.ingest(data, source, sop_uid_hint=sop_uid)
        except OSError as exc:  # disk full / unwritable RADCLIP_HOME: the sender should retry later
            log.error("C-STORE of SOP Instance UID %s from %s failed: %s", sop_uid, source, exc)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS if result.status == "processed" else STATUS_CANNOT_UNDERSTAND

    def _handle_echo(self, event: Any) -> int:
        return STATUS_SUCCESS

    def start(self) -> StoreScp:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.config.ae_title)
        ae.require_called_aet = self.config.require_called_ae
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._handle_store), (evt.EVT_C_ECHO, self._handle_echo)]
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers
        )
        log.info("C-STORE SCP %s listening on %s:%d", self.config.ae_title, self.config.host, self.port)
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
