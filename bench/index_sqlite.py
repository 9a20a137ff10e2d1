#!/usr/bin/env python3
"""The alternative design for the on-disk index, measured: an embedded
key-value store (SQLite, the engine rusqlite links, as a WITHOUT ROWID
table keyed by the 32-byte blob id with the 15-byte location as value).

    index_sqlite.py DIR BLOBS

Inserts BLOBS random ids in batches of 1M (sorted within each batch, as
the on-disk index's runs are), then times 200,000 random lookups (half
present, half absent) and prints the file's bytes per blob, the insert
rate and the lookup rate. docs/performance.md ("Index size") compares it
with the chosen sorted runs.
"""
import os
import random
import resource
import sqlite3
import sys
import time


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, blobs = os.path.join(sys.argv[1], "index.sqlite"), int(sys.argv[2])
    os.makedirs(sys.argv[1], exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE blobs (id BLOB PRIMARY KEY, loc BLOB NOT NULL) WITHOUT ROWID")
    rng = random.Random(1)
    kept = []
    start = time.monotonic()
    done = 0
    while done < blobs:
        n = min(1_000_000, blobs - done)
        batch = sorted((rng.randbytes(32), rng.randbytes(15)) for _ in range(n))
        kept.extend(b[0] for b in batch[:: max(1, n // 1000)])
        db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?)", batch)
        db.commit()
        done += n
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    built = time.monotonic() - start
    size = os.path.getsize(path)
    probes = [rng.choice(kept) for _ in range(100_000)] + [rng.randbytes(32) for _ in range(100_000)]
    rng.shuffle(probes)
    start = time.monotonic()
    found = 0
    for p in probes:
        found += db.execute("SELECT loc FROM blobs WHERE id = ?", (p,)).fetchone() is not None
    looked = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"sqlite: {blobs:,} blobs, {size / blobs:.1f} B/blob, built in {built:.1f} s "
        f"({blobs / built / 1e6:.2f} M/s), {len(probes) / looked / 1e3:.0f} k lookups/s "
        f"({found:,} found), peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
