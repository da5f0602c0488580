#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 cluster on loopback for radclip (tests, local service runs).
#
#   scripts/start_postgres.sh [DIR] [PORT]
#
# DIR (default: a new temp dir) holds the cluster; PORT (default: a free port). Prints
#   RADCLIP_DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/radclip
# and the command that stops it. initdb/pg_ctl run as the `postgres` user when we are root.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$PG_BIN/initdb" ]; then
  "$HERE/ensure_apt.sh" || { echo "start_postgres: PostgreSQL is not installed" >&2; exit 1; }
fi
DIR="${1:-$(mktemp -d -t radclip_pg.XXXXXX)}"
PORT="${2:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
mkdir -p "$DIR/sock"

AS_PG=()
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres "$DIR"
  AS_PG=(runuser -u postgres --)
fi

if [ ! -f "$DIR/data/PG_VERSION" ]; then
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync >"$DIR/initdb.log"
fi
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w start \
  -o "-p $PORT -k $DIR/sock -c listen_addresses=127.0.0.1" >/dev/null
"$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qtc "SELECT 1 FROM pg_database WHERE datname='radclip'" | grep -q 1 \
  || "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE radclip" >/dev/null

echo "RADCLIP_DATABASE_URL=postgresql://postgres@127.0.0.1:$PORT/radclip"
echo "# stop with: ${AS_PG[*]} $PG_BIN/pg_ctl -D $DIR/data -m fast stop"
