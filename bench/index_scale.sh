#!/usr/bin/env bash
# How opening a store and backing up into it grow with the size of its index.
#
#   bench/index_scale.sh [--work DIR] [--sizes 1000000,10000000,100000000]
#                        [--memory-up-to N] [--kloset BIN]
#
# Grows one local store's index with synthetic blobs
# (kloset/examples/synthetic_index.rs: index objects listing random ids in
# empty packs) to each size in turn. At each size, under /usr/bin/time:
#   build   `kloset ls` with no index cache: the on-disk index is built;
#   open    `kloset ls` again, the cache warm (new objects: none);
#   backup  a backup of 1,000 new 4 KiB files, the cache warm;
#   lookups the generator's --lookups: index lookups per second of present
#           (every 1,000th generated id) and absent ids;
# plus the cache's bytes per blob, and, up to --memory-up-to blobs (default
# 10M), `open` and `backup` with the index held in memory instead
# (KLOSET_INDEX_MEMORY_MAX above the store's index size). Results go to
# WORK/index-scale.tsv and a table on stdout; docs/performance.md ("Index
# size") holds the latest. A benchmark, not a test.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=/var/tmp/kloset-index-bench
SIZES=1000000,10000000,100000000
MEMORY_UP_TO=10000000
KLOSET=
while (($#)); do
    case "$1" in
    --work) WORK="$2"; shift 2 ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --memory-up-to) MEMORY_UP_TO="$2"; shift 2 ;;
    --kloset) KLOSET="$(realpath "$2")"; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
log() { printf '== %s\n' "$*" >&2; }

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
log "building kloset and the synthetic index generator (release)"
cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p kloset --example synthetic_index >&2
if [[ -z $KLOSET ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p klosetd --bin kloset >&2
    KLOSET="$TARGET/kloset"
fi
GENERATE="$TARGET/examples/synthetic_index"

rm -rf "$WORK"
mkdir -p "$WORK/log"
STORE="$WORK/store"
export KLOSET_PASSPHRASE=bench
export KLOSET_CACHE_DIR="$WORK/cache"
RESULTS="$WORK/index-scale.tsv"
printf 'blobs\tstep\tindex\twall_s\tuser_s\tsys_s\tmax_rss_kib\n' >"$RESULTS"

measure() { # blobs step index command...
    local blobs=$1 step=$2 index=$3
    shift 3
    sync
    log "$blobs blobs / $step / $index"
    if ! /usr/bin/time -f '%e\t%U\t%S\t%M' -o "$WORK/time.out" "$@" \
        >"$WORK/log/$blobs-$step-$index.log" 2>&1; then
        echo "FAILED: $blobs / $step / $index (log: $WORK/log/$blobs-$step-$index.log)" >&2
        tail -5 "$WORK/log/$blobs-$step-$index.log" >&2
        exit 1
    fi
    printf '%s\t%s\t%s\t%s\n' "$blobs" "$step" "$index" "$(tail -1 "$WORK/time.out")" >>"$RESULTS"
}

new_files() { # dir seed
    mkdir -p "$1"
    python3 - "$1" "$2" <<'PY'
import os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
for i in range(1000):
    d = os.path.join(root, f"d{i % 10}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(rng.randbytes(4096))
PY
}

"$KLOSET" at "$STORE" create >"$WORK/log/create.log" 2>&1
have=0
for size in "${SIZE_LIST[@]}"; do
    log "growing the index to $size blobs"
    "$GENERATE" "$STORE" $((size - have)) >>"$WORK/log/generate.log"
    have=$size
    index_bytes=$(du -sb "$STORE/index" | cut -f1)

    rm -rf "$KLOSET_CACHE_DIR"
    measure "$size" build disk "$KLOSET" at "$STORE" ls
    measure "$size" open disk "$KLOSET" at "$STORE" ls
    new_files "$WORK/src-$size-disk" "$size"
    measure "$size" backup disk "$KLOSET" at "$STORE" backup "$WORK/src-$size-disk"
    measure "$size" lookups disk "$GENERATE" "$STORE" --lookups
    cat "$WORK/log/$size-lookups-disk.log" >>"$WORK/lookups.txt"
    cache_bytes=$(du -sb "$KLOSET_CACHE_DIR"/*/index | cut -f1)
    printf '%s\tcache-bytes\tdisk\t%s\n' "$size" "$cache_bytes" >>"$RESULTS"
    printf '%s\tindex-object-bytes\t-\t%s\n' "$size" "$index_bytes" >>"$RESULTS"

    if ((size <= MEMORY_UP_TO)); then
        export KLOSET_INDEX_MEMORY_MAX=$((index_bytes * 2))
        measure "$size" open memory "$KLOSET" at "$STORE" ls
        new_files "$WORK/src-$size-memory" "$((size + 1))"
        measure "$size" backup memory "$KLOSET" at "$STORE" backup "$WORK/src-$size-memory"
        measure "$size" lookups memory "$GENERATE" "$STORE" --lookups
        cat "$WORK/log/$size-lookups-memory.log" >>"$WORK/lookups.txt"
        unset KLOSET_INDEX_MEMORY_MAX
    fi
done
python3 "$ROOT/bench/index_table.py" "$RESULTS" --svg "$WORK/index-scale.svg"
echo
cat "$WORK/lookups.txt"
