#!/usr/bin/env bash
# sportello's event store beside the peer event stores of ../shared/peers/ (the Python library
# eventsourcing, the Rust crates cqrs-es + postgres-es, Emmett on Node), on one workload, in one
# interleaved run: each repetition runs every peer once, so the disk's drift hits all alike.
# Prints the peers' lines (medians of REPS) and then sportello's ratio to each peer.
#
# Usage: scripts/bench-peers.sh [N_STREAMS]     (default 2000 streams × 10 events)
# Knobs: PEERS_DIR (the peers' folder, default ../shared/peers beside the project),
#        PEERS_WORK (its writable copy, default /tmp/sportello-peers: kept, so the venv, the
#        cqrs-es build and node_modules are reused), and the peers' own PEERS, STORES,
#        MEASURES, REPS, A_STREAMS (see their README.md). Needs PostgreSQL on its Unix socket.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source_dir=${PEERS_DIR:-$root/../shared/peers}
work=${PEERS_WORK:-/tmp/sportello-peers}
streams=${1:-2000}
if [ ! -f "$source_dir/driver.py" ]; then
  echo "no peer benchmarks at $source_dir: set PEERS_DIR to the folder that holds driver.py" >&2
  exit 2
fi

# A writable copy; what setup.sh builds inside it stays for the next run.
mkdir -p "$work"
cp -r "$source_dir/." "$work/"
chmod -R u+w "$work"
# The PostgreSQL runs are made as the OS user postgres, who must reach the copy.
chmod a+rx "$work"
(cd "$work" && ./setup.sh) >&2

cargo build --release --locked --manifest-path "$root/Cargo.toml" >&2
install -m 755 "${CARGO_TARGET_DIR:-$root/target}/release/sportello" "$work/sportello"

export PEERS=${PEERS:-sportello,eventsourcing-recorder,eventsourcing-app,cqrs-es,emmett}
lines="$work/.data/lines-$(date -u +%Y%m%dT%H%M%SZ).txt"
mkdir -p "$work/.data"
(cd "$work" && PEERS_HOME="$work" .venv/bin/python "$root/scripts/peers_with_sportello.py" \
  --streams "$streams") | tee "$lines"
echo
"$work/.venv/bin/python" "$root/scripts/peers_with_sportello.py" --ratios "$lines"
