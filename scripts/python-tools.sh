#!/usr/bin/env bash
# Makes target/python-tools, a virtual environment with the Python tools the tests use as real
# peers (aiosmtpd: an SMTP server; frictionless: the Data Package validator; pyshacl: SHACL;
# georeport: an Open311 client), and prints its python. Pinned; installed on first use from
# PyPI. Needs python3 with venv (Debian: apt-get install python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-tools
pins="aiosmtpd==1.4.6 frictionless==5.18.1 pyshacl==0.30.1 georeport==0.3.1"
stamp="$venv/.pins"

# Tests run in parallel: one of them makes the environment, the others wait for it.
mkdir -p target
exec 9>target/.python-tools.lock
flock 9

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$pins" ]; then
  command -v python3 >/dev/null || { echo "the tests need python3 (apt-get install python3 python3-venv)" >&2; exit 2; }
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || { echo "python3 cannot make a virtual environment: apt-get install python3-venv" >&2; exit 2; }
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >&2
  echo "$pins" > "$stamp"
fi
echo "$PWD/$venv/bin/python"
