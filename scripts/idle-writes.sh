#!/usr/bin/env bash
# Bytes an idle `sportello serve` writes to disk (issue 12): starts the release binary on a fresh
# SQLite data directory, lets it settle, then reads the process's `write_bytes` (/proc/PID/io:
# what reached the block layer, WAL frames and checkpoints included) over a window.
#
#   scripts/idle-writes.sh [RUNS] [SECONDS]      (defaults: 3 runs of 60 s after 20 s of warm-up)
#
# Prints one line per run and the median, in bytes and as MB an hour. Linux only.
set -euo pipefail
runs=${1:-3}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
binary=${SPORTELLO_BINARY:-$root/target/release/sportello}
[ -x "$binary" ] || (cd "$root" && cargo build --release --locked)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=()
for run in $(seq 1 "$runs"); do
  rm -rf "$work/data"
  (cd "$work" && SPORTELLO__API__BIND=127.0.0.1:0 exec "$binary" serve >"$work/serve.log" 2>&1) &
  pid=$!
  sleep 20
  before=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
  sleep "$seconds"
  after=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  bytes=$((after - before))
  results+=("$bytes")
  echo "run $run: $bytes bytes in $seconds s ($(awk -v b="$bytes" -v s="$seconds" 'BEGIN {printf "%.2f", b / s * 3600 / 1e6}') MB an hour)"
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
echo "measure=idle_writes runs=$runs seconds=$seconds median_bytes=$median mb_per_hour=$(awk -v b="$median" -v s="$seconds" 'BEGIN {printf "%.2f", b / s * 3600 / 1e6}')"
