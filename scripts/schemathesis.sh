#!/usr/bin/env bash
# Runs schemathesis against a running `sportello serve`: every operation of the OpenAPI document,
# public and staff, with every check (server errors, statuses and content types documented,
# response schemas, schema-valid data accepted and schema-violating data refused, …).
#
#   scripts/schemathesis.sh BASE_URL TOKEN [SECONDS]
#
# Installs schemathesis (pinned) into target/schemathesis-venv on first use: it needs python3
# with venv (Debian: apt-get install python3-venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:?usage: scripts/schemathesis.sh BASE_URL TOKEN [SECONDS]}
token=${2:?usage: scripts/schemathesis.sh BASE_URL TOKEN [SECONDS]}
seconds=${3:-90}
version=4.32.5
venv=target/schemathesis-venv

if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  command -v python3 >/dev/null || { echo "schemathesis needs python3 (apt-get install python3 python3-venv)" >&2; exit 2; }
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "python3 cannot make a virtual environment: apt-get install python3-venv" >&2; exit 2; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$PWD/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/st" run "$base/api/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $token" \
  --workers 2 \
  --max-time "$seconds" \
  --seed 20261202 \
  --no-color
