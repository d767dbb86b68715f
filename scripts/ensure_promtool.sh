#!/usr/bin/env bash
# Make `promtool` available for `promtool test rules deploy/prometheus/alerts_test.yml`.
#
#   scripts/ensure_promtool.sh     prints the promtool path; exit 1 when it cannot get one
#
# Uses a promtool on PATH, else one in .venv/bin, else extracts it from Debian's `prometheus`
# package into .venv/bin. Extracting, rather than `apt-get install prometheus`, leaves no
# Prometheus daemon (the package's service) running on the machine.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEST="$REPO_ROOT/.venv/bin"

log() { printf 'ensure_promtool: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
if [[ -x $DEST/promtool ]]; then echo "$DEST/promtool"; exit 0; fi

command -v apt-get >/dev/null 2>&1 || { log "no promtool and no apt-get: install Prometheus' promtool"; exit 1; }
mkdir -p "$DEST"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"   # apt's _apt user downloads into it when it can
log "extracting promtool from Debian's prometheus package"
if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
  [[ $EUID -eq 0 ]] || { log "apt-get download failed; run as root to refresh the package lists"; exit 1; }
  apt-get update -qq
  (cd "$tmp" && apt-get download -qq prometheus)
fi
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
install -m 0755 "$tmp/root/usr/bin/promtool" "$DEST/promtool"
"$DEST/promtool" --version >/dev/null
echo "$DEST/promtool"
