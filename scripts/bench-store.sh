#!/usr/bin/env bash
# The event-store benchmarks of issue 2, each run RUNS times (default 3); prints every result line
# and then the median of each measure. Usage: scripts/bench-store.sh [POSTGRES_URL] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
pg=${1:-postgres://postgres@127.0.0.1:5432/postgres}
runs=${2:-3}
cargo build --release --quiet
bin=target/release/sportello
out=$(mktemp)
run() { "$bin" "$@" 2>/dev/null | tail -n 1 | tee -a "$out"; }
for _ in $(seq "$runs"); do
  run bench appends --streams 2000 --events-per-stream 10 --mode single
  run bench appends --streams 2000 --events-per-stream 10 --mode batch
  run bench appends --streams 3200 --events-per-stream 10 --mode single --concurrency 32
  run bench appends --streams 32000 --events-per-stream 10 --mode batch --concurrency 32
  run bench read --events 1000000
  run --store "$pg" bench appends --streams 3200 --events-per-stream 10 --mode single --concurrency 32
  run --store "$pg" bench appends --streams 32000 --events-per-stream 10 --mode batch --concurrency 32
  scripts/pg-insert-bound.sh "$pg" 10 | tee -a "$out"
done
echo "--- medians over $runs runs"
python3 - "$out" <<'PY'
import sys, statistics, collections
groups = collections.defaultdict(list)
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    key = (kv["measure"], kv["store"], kv.get("concurrency", "-"))
    groups[key].append(kv)
for (measure, store, conc), rows in groups.items():
    med = lambda k: statistics.median(float(r[k]) for r in rows if k in r) if any(k in r for r in rows) else None
    extra = ""
    if med("fsync_per_s"):
        extra = f" fsync_per_s={med('fsync_per_s'):.0f} ratio_to_fsync={statistics.median(float(r['events_per_s'])/float(r['fsync_per_s']) for r in rows):.2f}"
    if med("rss_mb"):
        extra += f" rss_mb={med('rss_mb'):.1f}"
    print(f"{measure} store={store} concurrency={conc} events_per_s={med('events_per_s'):.0f}{extra}")
PY
rm -f "$out"
