#!/usr/bin/env bash
# The browser tests drive Debian's chromium (Playwright's bundled download cannot work here).
# Installs it through apt when /usr/bin/chromium is missing; quiet and idempotent.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
log() { printf 'browser: %s\n' "$*" >&2; }

[[ -x $CHROMIUM ]] && exit 0

if [[ $EUID -ne 0 ]]; then
  log "$CHROMIUM is missing; install Debian's chromium (apt-get install chromium, needs root)"
  exit 1
fi
log "installing chromium through apt"
export DEBIAN_FRONTEND=noninteractive
# Fonts keep the screenshots legible on a minimal image; they are small.
packages=(chromium fonts-dejavu-core)
if ! apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
[[ -x $CHROMIUM ]] || { log "apt finished but $CHROMIUM is still missing"; exit 1; }
log "ready: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
