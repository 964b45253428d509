#!/usr/bin/env bash
# Makes sure a redis-server binary is available (the tests and the demo start throwaway ones).
# Installs Debian's package when missing and we may (root, or passwordless sudo); otherwise says how.
set -u
if command -v redis-server >/dev/null 2>&1 || [ -n "${REDIS_URL:-}" ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
if [ "$SUDO" != "none" ] && command -v apt-get >/dev/null 2>&1; then
  echo "bos-fleet: redis-server not found; installing the Debian package redis-server" >&2
  $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null || exit 1
  # The package may start a system Redis on 6379; bos-fleet starts its own, so stop that one.
  $SUDO systemctl stop redis-server >/dev/null 2>&1 || $SUDO service redis-server stop >/dev/null 2>&1 || true
  exit 0
fi
echo "bos-fleet: redis-server not found. Install it (Debian/Ubuntu: sudo apt-get install redis-server, macOS: brew install redis) or set REDIS_URL to a Redis with appendonly yes." >&2
exit 1
