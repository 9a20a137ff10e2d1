#!/usr/bin/env bash
# Measures kloset's store settings on the sysroot corpus, to choose defaults:
#
#   bench/tune.sh [--work DIR] [--kloset BIN] [SETTING ...]
#
# A SETTING is CHUNK/LEVEL, e.g. 1MiB/3 (`kloset create --chunk-size CHUNK
# --compression-level LEVEL`); the default list varies one at a time around
# the defaults. For each: a new store, the initial backup of the corpus
# (timed with /usr/bin/time), the store size, then a backup of the corpus
# after the 1% change of bench/corpus.py (another copy, so every file is
# read and only deduplication decides what is added), and what it added.
# Prints a markdown table; docs/performance.md keeps the latest one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=/var/tmp/kloset-tune
KLOSET=
SETTINGS=()
while (($#)); do
    case "$1" in
    --work) WORK="$2"; shift 2 ;;
    --kloset) KLOSET="$(realpath "$2")"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) SETTINGS+=("$1"); shift ;;
    esac
done
((${#SETTINGS[@]})) || SETTINGS=(256KiB/3 512KiB/3 1MiB/3 2MiB/3 1MiB/1 1MiB/6 1MiB/9)
if [[ -z $KLOSET ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p klosetd --bin kloset >&2
    KLOSET="${CARGO_TARGET_DIR:-$ROOT/target}/release/kloset"
fi
export KLOSET_PASSPHRASE=tune KLOSET_CACHE_DIR=off
mkdir -p "$WORK"
rm -rf "$WORK/a" "$WORK/b" "$WORK/store"
python3 "$ROOT/bench/corpus.py" sysroot "$WORK/a" >&2
cp -a "$WORK/a" "$WORK/b"
python3 "$ROOT/bench/corpus.py" mutate "$WORK/b" >&2
corpus=$(du -sb "$WORK/a" | cut -f1)

echo "| chunk size / zstd level | initial backup | CPU | peak RSS | store | ratio | changed copy adds | blobs |"
echo "|---|---|---|---|---|---|---|---|"
for setting in "${SETTINGS[@]}"; do
    chunk=${setting%/*} level=${setting#*/}
    rm -rf "$WORK/store"
    "$KLOSET" at "$WORK/store" create --chunk-size "$chunk" --compression-level "$level" >/dev/null
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.out" "$KLOSET" --json at "$WORK/store" backup "$WORK/a" >"$WORK/first.json"
    read -r wall user sys rss <"$WORK/time.out"
    size=$(du -sb "$WORK/store" | cut -f1)
    "$KLOSET" --json at "$WORK/store" backup "$WORK/b" >"$WORK/second.json"
    after=$(du -sb "$WORK/store" | cut -f1)
    blobs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"]["stats"]["blobs_added"])' "$WORK/first.json")
    printf '| %s / %s | %.2f s | %.1f s | %d MiB | %.1f MB | %.2f | %.1f MB | %d |\n' \
        "$chunk" "$level" "$wall" "$(echo "$user + $sys" | bc)" "$((rss / 1024))" \
        "$(echo "$size / 1000000" | bc -l)" "$(echo "$corpus / $size" | bc -l)" \
        "$(echo "($after - $size) / 1000000" | bc -l)" "$blobs"
done
rm -rf "$WORK/a" "$WORK/b" "$WORK/store"
