#!/usr/bin/env bash
# Public intake over HTTP (issue 4): `wrk` on loopback POSTs new contacts to `sportello serve` on a
# fresh SQLite store, RUNS times (default 3); prints each run and the medians of accepted
# contacts per second and of the 99th-percentile latency.
# Usage: scripts/bench-intake.sh [RUNS] [SECONDS] [CONNECTIONS]
# SPORTELLO_BIN=PATH measures another build (a baseline) instead of this tree's release build.
# SERVE_FLAGS="--no-projections --no-workers" measures an intake node alone, as in a deployment
# where `sportello worker` runs the projections and jobs elsewhere (docs/benchmarks.md).
# STORE=postgres measures on PostgreSQL instead (a fresh database per run on the local server's
# Unix socket, as user postgres, dropped afterwards; PGHOST overrides the socket's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
seconds=${2:-20}
connections=${3:-32}
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if [ -n "${SPORTELLO_BIN:-}" ]; then
  bin=$SPORTELLO_BIN
else
  cargo build --release --quiet
  bin=$PWD/target/release/sportello
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local comuni = {"073004", "073015", "073029"}
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"comune":"%s","kind":"segnalazione","channel":"web","service":null,' ..
    '"subject":"Lampione spento in via %d","description":"Da tre sere non si accende.",' ..
    '"citizen":{"name":"Cittadino %d","email":"c%d@example.it"},"privacy_consent":true}',
    comuni[n % 3 + 1], n, n, n)
  return wrk.format(nil, nil, nil, body)
end
LUA
results=$work/results
for run in $(seq "$runs"); do
  store=$work/run$run
  mkdir -p "$store"
  if [ "${STORE:-sqlite}" = postgres ]; then
    database=bench_intake_$$_$run
    psql -h "${PGHOST:-/var/run/postgresql}" -U postgres -qc "CREATE DATABASE $database"
    export SPORTELLO__STORE__URL="postgres:///$database?host=${PGHOST:-/var/run/postgresql}&user=postgres"
    # A PostgreSQL store seals personal data under a master key of its own (a fresh one here).
    SPORTELLO__VAULT__MASTER_KEY=$(openssl rand -base64 32)
    export SPORTELLO__VAULT__MASTER_KEY
  else
    export SPORTELLO__STORE__URL=sqlite://$store/urp.db
  fi
  # One client address sends everything: lift the per-address limit for the measurement.
  SPORTELLO__API__PUBLIC_BURST=100000000 \
    SPORTELLO__API__PUBLIC_POSTS_PER_MINUTE=100000000 SPORTELLO_LOG=warn \
    "$bin" serve ${SERVE_FLAGS:-} --bind 127.0.0.1:0 > "$store/serve.out" &
  server=$!
  for _ in $(seq 100); do grep -q listening "$store/serve.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^sportello: listening on //p' "$store/serve.out")
  wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/post.lua" "$url/api/v1/cases" > "$store/wrk.out"
  kill -TERM "$server"; wait "$server" || true
  # Every acknowledged contact must be in the log.
  cases=$("$bin" replay --category case --type CaseOpened | wc -l)
  if [ "${STORE:-sqlite}" = postgres ]; then
    psql -h "${PGHOST:-/var/run/postgresql}" -U postgres -qc "DROP DATABASE $database WITH (FORCE)"
  fi
  python3 - "$store/wrk.out" "$cases" "$seconds" "${SERVE_FLAGS:-}" "${STORE:-sqlite}" <<'PY' | tee -a "$results"
import re, sys
text = open(sys.argv[1]).read()
cases, seconds = int(sys.argv[2]), float(sys.argv[3])
def ms(v):
    found = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not found:
        sys.exit(f"cannot read the latency {v!r} in:\n{text}")
    n, unit = found.groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(bad.group(1)) if bad else 0
accepted = total - bad
print(f"measure=intake{'-node' if sys.argv[4] else ''} store={sys.argv[5]} accepted={accepted} rejected={bad} logged_cases={cases} "
      f"accepted_per_s={accepted / seconds:.0f} p50_ms={p50:.2f} p99_ms={p99:.2f}")
PY
done
echo "--- medians over $runs runs"
python3 - "$results" <<'PY'
import statistics, sys
rows = [dict(p.split("=", 1) for p in l.split()) for l in open(sys.argv[1])]
med = lambda k: statistics.median(float(r[k]) for r in rows)
print(f"intake accepted_per_s={med('accepted_per_s'):.0f} p50_ms={med('p50_ms'):.2f} p99_ms={med('p99_ms'):.2f}")
PY
