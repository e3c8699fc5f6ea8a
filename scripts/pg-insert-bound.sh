#!/usr/bin/env bash
# The bare-insert bound for PostgreSQL appends: pgbench, 32 clients, each transaction inserting
# 10 rows of about 300 bytes into a bare table with only a unique (stream, version) index.
# Prints `measure=pg_bare_insert_bound … events_per_s=N` (= transactions/s × 10).
# Usage: scripts/pg-insert-bound.sh [postgres://USER@HOST:PORT/DATABASE] [SECONDS]
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
seconds=${2:-10}
db="sportello_bound_$$"
psql "$url" -qAtc "CREATE DATABASE $db"
trap 'psql "$url" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
target="${url%/*}/$db"
psql "$target" -qAtc "CREATE TABLE bare (stream text NOT NULL, version bigint NOT NULL, data text NOT NULL, UNIQUE (stream, version))"
script=$(mktemp)
cat > "$script" <<'SQL'
\set s random(1, 1000000000000)
INSERT INTO bare SELECT 'bench-' || :client_id || '-' || :s, g, repeat('x', 300) FROM generate_series(1, 10) g ON CONFLICT DO NOTHING;
SQL
tps=$(pgbench -n -c 32 -j 2 -T "$seconds" -f "$script" "$target" 2>/dev/null | awk '/^tps/ {print $3; exit}')
rm -f "$script"
echo "measure=pg_bare_insert_bound store=postgres clients=32 rows_per_tx=10 seconds=$seconds tps=$tps events_per_s=$(awk -v t="$tps" 'BEGIN {printf "%.0f", t * 10}')"
