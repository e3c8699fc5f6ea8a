#!/usr/bin/env python3
"""The peers' driver (../shared/peers/driver.py) with sportello added as one more peer, or,
with --ratios FILE, sportello's ratio to each peer from the lines such a run printed.

Run by scripts/bench-peers.sh with PEERS_HOME set to the peers' writable copy, which holds the
sportello binary. sportello runs `bench peer` on the store the driver resets between runs: the
SQLite file of ES_SQLITE_PATH, or the PostgreSQL database of PGDATABASE on PGHOST's socket.
"""

import os
import sys
from collections import defaultdict
from urllib.parse import quote


def ratios(path: str) -> int:
    rates = defaultdict(dict)
    for line in open(path):
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if {"peer", "store", "measure", "events_per_s"} <= fields.keys():
            if fields["events_per_s"] != "NA":
                rates[(fields["store"], fields["measure"])][fields["peer"]] = float(
                    fields["events_per_s"]
                )
    names = {"a": "single appends", "b": "batched appends", "c": "read + projection"}
    for (store, measure), by_peer in sorted(rates.items()):
        ours = by_peer.get("sportello")
        if ours is None:
            continue
        for peer, rate in sorted(by_peer.items()):
            if peer != "sportello":
                print(
                    f"store={store} measure={measure} ({names.get(measure, measure)}) "
                    f"sportello={ours:.0f} {peer}={rate:.0f} ratio={ours / rate:.2f}"
                )
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--ratios":
        return ratios(sys.argv[2])
    home = os.environ["PEERS_HOME"]
    sys.path.insert(0, home)
    import driver

    binary = os.path.join(home, "sportello")

    def command(store: str, measure: str, n: int) -> list[str]:
        if store == "sqlite":
            url = "sqlite://" + driver.sqlite_path()
        else:
            env = driver.pg_env()
            url = (
                f"postgres:///{quote(env['PGDATABASE'])}?host={quote(env['PGHOST'])}"
                f"&port={env['PGPORT']}&user={quote(env['PGUSER'])}"
            )
        return [binary, "--store", url, "bench", "peer", "--measure", measure, "--streams", str(n)]

    driver.PEERS = {"sportello": {"stores": ["sqlite", "postgres"], "cmd": command}, **driver.PEERS}
    return driver.main()


if __name__ == "__main__":
    sys.exit(main())
