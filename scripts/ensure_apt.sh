#!/usr/bin/env bash
# Install Debian packages radclip's tests and service need, if missing. With no arguments:
# PostgreSQL (registry/index metadata) and redis-server (shared text-embedding cache);
# otherwise the packages named (e.g. `scripts/ensure_apt.sh chromium`).
# Idempotent: does nothing when both are present. Runs apt-get update at most once.
# Needs root (or passwordless sudo). Exits non-zero with a message when it cannot install.
set -euo pipefail

if [ "$#" -gt 0 ]; then PACKAGES=("$@"); else PACKAGES=(postgresql redis-server); fi
missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "ensure_apt: all present (${PACKAGES[*]})"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure_apt: need root to install ${missing[*]}; run as root or install them with:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_apt: apt-get not found; install ${missing[*]} with your system's package manager" >&2
  exit 1
fi

echo "ensure_apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q; then
  echo "ensure_apt: apt-get update failed (no network or apt lock held?); retry later" >&2
  exit 1
fi
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  echo "ensure_apt: apt-get install ${missing[*]} failed; see the output above" >&2
  exit 1
fi
echo "ensure_apt: installed ${missing[*]}"
