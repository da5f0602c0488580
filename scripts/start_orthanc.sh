#!/usr/bin/env bash
# Start a throwaway Orthanc PACS (with the DICOMweb plugin) for radclip's integration tests and demos.
#
#   scripts/start_orthanc.sh [HTTP_PORT] [DICOM_PORT] [STORAGE_DIR]
#
# Installs the Debian packages `orthanc` and `orthanc-dicomweb` when missing (scripts/ensure_apt.sh),
# writes a generated JSON config next to the storage (custom ports, no auth, storage in STORAGE_DIR,
# default a new temp dir; DICOMweb at /dicom-web/), starts Orthanc in the background and waits until
# its REST API answers. Prints shell-style lines the caller can eval or parse:
#   ORTHANC_HTTP=http://127.0.0.1:PORT  ORTHANC_DICOMWEB=http://127.0.0.1:PORT/dicom-web
#   ORTHANC_DICOM_PORT=PORT  ORTHANC_AET=ORTHANC  ORTHANC_PID=PID  ORTHANC_STORAGE=DIR  ORTHANC_CONFIG=FILE
#
# Network exposure: Orthanc 1.10 has no bind-address setting and listens on all interfaces.
# Mitigations in the generated config: "RemoteAccessAllowed": false (the REST/DICOMweb API answers
# only loopback clients), and DICOM C-STORE/C-ECHO are accepted only from the modalities listed in
# RADCLIP_ORTHANC_MODALITIES (default: AE title RADCLIP_SCU at 127.0.0.1) with
# "DicomCheckModalityHost": true. Always talk to it through 127.0.0.1. To run it with no reachable
# interface at all, start it, and every process that talks to it, inside one network namespace:
#   unshare -n bash -c 'ip link set lo up; scripts/start_orthanc.sh; ...'
# Re-running with the same STORAGE_DIR (and ports) restarts over the same stored studies.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
if ! command -v Orthanc >/dev/null 2>&1 || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  "$HERE/ensure_apt.sh" orthanc orthanc-dicomweb >&2 || { echo "start_orthanc: cannot install orthanc + orthanc-dicomweb" >&2; exit 1; }
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT="${1:-$(free_port)}"
DICOM_PORT="${2:-$(free_port)}"
STORAGE="${3:-$(mktemp -d /tmp/radclip_orthanc.XXXXXX)}"
mkdir -p "$STORAGE/db"
CONFIG="$STORAGE/orthanc.json"
LOG="$STORAGE/orthanc.log"
PLUGIN="/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
# RADCLIP_SCU: the tests' sender; RADCLIP: radclip sending its SR and heat maps back (RADCLIP_PACS_RETURN_AE)
MODALITIES="${RADCLIP_ORTHANC_MODALITIES:-{\"radclip\": [\"RADCLIP_SCU\", \"127.0.0.1\", 104], \"radclip-results\": [\"RADCLIP\", \"127.0.0.1\", 104]\}}"
cat > "$CONFIG" <<JSON
{
  "Name": "radclip-test-orthanc",
  "StorageDirectory": "$STORAGE/db",
  "IndexDirectory": "$STORAGE/db",
  "HttpPort": $HTTP_PORT,
  "DicomPort": $DICOM_PORT,
  "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "HttpServerEnabled": true,
  "DicomServerEnabled": true,
  "DicomAlwaysAllowEcho": false,
  "DicomAlwaysAllowStore": false,
  "DicomCheckModalityHost": true,
  "DicomModalities": $MODALITIES,
  "StableAge": 1,
  "ConcurrentJobs": 1,
  "HttpThreadsCount": 8,
  "Plugins": ["$PLUGIN"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Ssl": false, "StudiesMetadata": "MainDicomTags", "SeriesMetadata": "MainDicomTags" }
}
JSON
nohup Orthanc "$CONFIG" >"$LOG" 2>&1 &
PID=$!
echo "$PID" > "$STORAGE/orthanc.pid"
for _ in $(seq 150); do
  if curl -fsS "http://127.0.0.1:$HTTP_PORT/system" >/dev/null 2>&1; then
    echo "ORTHANC_HTTP=http://127.0.0.1:$HTTP_PORT"
    echo "ORTHANC_DICOMWEB=http://127.0.0.1:$HTTP_PORT/dicom-web"
    echo "ORTHANC_DICOM_PORT=$DICOM_PORT"
    echo "ORTHANC_AET=ORTHANC"
    echo "ORTHANC_PID=$PID"
    echo "ORTHANC_STORAGE=$STORAGE"
    echo "ORTHANC_CONFIG=$CONFIG"
    echo "# stop with: kill $PID"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "start_orthanc: Orthanc exited during start-up; last log lines:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
echo "start_orthanc: Orthanc did not answer on 127.0.0.1:$HTTP_PORT within 15 s; see $LOG" >&2
kill "$PID" 2>/dev/null || true
exit 1
