#!/usr/bin/env bash
# Start a throwaway redis-server on loopback for radclip's shared text-embedding cache.
#
#   scripts/start_redis.sh [PORT]
#
# Nothing is persisted (--save '' --appendonly no). Prints RADCLIP_REDIS_URL=... and the PID.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
if ! command -v redis-server >/dev/null 2>&1; then
  "$HERE/ensure_apt.sh" || { echo "start_redis: redis-server is not installed" >&2; exit 1; }
fi
PORT="${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "/tmp/radclip_redis_$PORT.pid" --logfile "/tmp/radclip_redis_$PORT.log"
for _ in $(seq 50); do
  if redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then
    echo "RADCLIP_REDIS_URL=redis://127.0.0.1:$PORT/0"
    echo "# stop with: kill \$(cat /tmp/radclip_redis_$PORT.pid)"
    exit 0
  fi
  sleep 0.1
done
echo "start_redis: redis-server did not answer on port $PORT; see /tmp/radclip_redis_$PORT.log" >&2
exit 1
