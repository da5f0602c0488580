#!/usr/bin/env bash
# Start radclip's FHIR R4 test server (Medplum's FHIR engine, in memory) on loopback.
#
#   scripts/start_fhir_server.sh [PORT]
#
# Installs the Node dependencies from the committed lockfile (`npm ci`) on first use, starts
# scripts/fhir-server/server.mjs in the background, waits until it answers, and prints:
#   RADCLIP_FHIR_URL=http://127.0.0.1:PORT/fhir/R4   FHIR_SERVER_PID=PID   FHIR_SERVER_LOG=FILE
# Data lives in memory only: stopping the server (kill PID) forgets everything.
# Needs Node.js >= 20 and npm (Debian: scripts/ensure_apt.sh nodejs npm). Medplum 5 declares
# Node >= 22; on Node 20 the server runs with --experimental-websocket (the only missing global).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
APP="$HERE/fhir-server"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  "$HERE/ensure_apt.sh" nodejs npm >&2 || { echo "start_fhir_server: node and npm are needed" >&2; exit 1; }
fi
if [ ! -f "$APP/node_modules/@medplum/fhir-router/package.json" ] || [ "$APP/package-lock.json" -nt "$APP/node_modules/.package-lock.json" ]; then
  (cd "$APP" && npm ci --no-audit --no-fund --loglevel=error >&2) || {
    echo "start_fhir_server: 'npm ci' failed in $APP (no registry access?); see the output above" >&2; exit 1; }
fi
PORT="${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
NODE_FLAGS=()
if [ "$(node -p 'typeof WebSocket')" = "undefined" ]; then NODE_FLAGS+=(--experimental-websocket); fi
LOG="$(mktemp /tmp/radclip_fhir.XXXXXX.log)"
nohup node "${NODE_FLAGS[@]}" "$APP/server.mjs" --port "$PORT" --host 127.0.0.1 >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 300); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
    echo "RADCLIP_FHIR_URL=http://127.0.0.1:$PORT/fhir/R4"
    echo "FHIR_SERVER_PID=$PID"
    echo "FHIR_SERVER_LOG=$LOG"
    echo "# stop with: kill $PID"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "start_fhir_server: the server exited during start-up; last log lines:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done
echo "start_fhir_server: no answer on 127.0.0.1:$PORT within 30 s; see $LOG" >&2
kill "$PID" 2>/dev/null || true
exit 1
