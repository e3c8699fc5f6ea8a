#!/usr/bin/env bash
# Makes what the browser tests need and prints two lines: the Chromium to drive and the folder of
# the Node packages. Debian's `chromium` (installed with apt-get when missing: CI runs as root);
# `playwright-core` and `axe-core` from npm at the versions pinned in tests/browser/package-lock.json,
# installed into target/browser-tools on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p target
exec 9>target/.browser-tools.lock
flock 9

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

chromium="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$chromium" ]; then
  echo "installing Debian's chromium (apt-get)" >&2
  { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium; } >&2 \
    || { echo "cannot install chromium: run apt-get install chromium as root" >&2; exit 2; }
  chromium="$(command -v chromium)"
fi
if ! command -v npm >/dev/null; then
  echo "installing node and npm (apt-get)" >&2
  { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm; } >&2 \
    || { echo "cannot install npm: run apt-get install nodejs npm as root" >&2; exit 2; }
fi

tools=target/browser-tools
stamp="$tools/.lock-sha"
want="$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)"
if [ ! -d "$tools/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$tools"
  mkdir -p "$tools"
  cp tests/browser/package.json tests/browser/package-lock.json "$tools/"
  (cd "$tools" && npm ci --silent --no-audit --no-fund) >&2 \
    || { echo "npm ci failed in $tools (is the npm registry reachable?)" >&2; exit 2; }
  echo "$want" > "$stamp"
fi
echo "$chromium"
echo "$PWD/$tools/node_modules"
