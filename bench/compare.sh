#!/usr/bin/env bash
# kloset against restic and rustic on the same data, in one run.
#
#   bench/compare.sh [--work DIR] [--corpora sysroot,small,large]
#                    [--tools kloset,restic,rustic,kloset-s3,restic-s3] [--small-files N]
#                    [--kloset BIN]   (a kloset binary to use instead of building one)
#
# For each corpus, every tool in turn: create a store, initial backup,
# unchanged re-backup (warm, then with a cold dentry cache when run as root),
# the deterministic 1% change (bench/corpus.py mutate) and a changed
# re-backup, a restore into an empty directory verified bit-exact against
# the corpus (diff -r), check --read-data, and the store's size. Each step
# runs under /usr/bin/time (wall, user+sys CPU, peak RSS); a `tar x` of the
# same tree is timed beside the restores. `*-s3` tools put their store in a
# loopback s3s-fs (started here) and count its requests. Results go to
# WORK/results.tsv and the tables (bench/table.py) to stdout and
# WORK/results.md. A benchmark, not a test: nothing here fails on a figure.
# docs/performance.md holds the latest results and how they were taken.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=/var/tmp/kloset-bench
CORPORA=sysroot,small,large
TOOLS=kloset,restic,rustic
SMALL_FILES=1000000
KLOSET=
KLOSET_GIVEN=0
while (($#)); do
    case "$1" in
    --work) WORK="$2"; shift 2 ;;
    --corpora) CORPORA="$2"; shift 2 ;;
    --tools) TOOLS="$2"; shift 2 ;;
    --small-files) SMALL_FILES="$2"; shift 2 ;;
    --kloset) KLOSET="$(realpath "$2")"; KLOSET_GIVEN=1; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a CORPUS_LIST <<<"$CORPORA"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf '== %s\n' "$*" >&2; }
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
has_s3() { [[ ",$TOOLS," == *-s3,* ]]; }

# --- Tools ---------------------------------------------------------------------
if [[ -z $KLOSET ]]; then
    log "building kloset (release)"
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p klosetd --bin kloset >&2
    KLOSET="${CARGO_TARGET_DIR:-$ROOT/target}/release/kloset"
fi
if [[ ",$TOOLS," == *,restic* ]] && ! command -v restic >/dev/null; then
    log "installing restic (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends restic >&2
fi
if [[ ",$TOOLS," == *,rustic* ]] && ! command -v rustic >/dev/null; then
    log "installing rustic (cargo install rustic-rs --locked; about 8 minutes)"
    cargo install rustic-rs --locked >&2
fi
if has_s3 && ! command -v s3s-fs >/dev/null; then
    log "installing s3s-fs 0.14.1"
    cargo install s3s-fs@0.14.1 --features binary --locked >&2
fi

mkdir -p "$WORK"/{corpus,stores,restore,log,cache}
WORK="$(cd "$WORK" && pwd)"
export XDG_CACHE_HOME="$WORK/cache" # restic's and rustic's caches
export KLOSET_CACHE_DIR="$WORK/cache/kloset" # kloset's tree cache (root's is /var/cache/kloset)
export KLOSET_PASSPHRASE=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
RESULTS="$WORK/results.tsv"
printf 'corpus\ttool\tstep\twall_s\tuser_s\tsys_s\tmax_rss_kib\tbytes\trequests\n' >"$RESULTS"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "disk: $(df -hT "$WORK" | awk 'NR==2 {print $2 " on " $1 ", " $5 " free"}')"
    if [[ $KLOSET_GIVEN == 1 ]]; then
        # A binary from elsewhere: the checkout's commit need not be its own.
        echo "kloset: $("$KLOSET" version 2>&1 | head -1) (given: $KLOSET; checkout at $(git -C "$ROOT" rev-parse --short HEAD))"
    else
        echo "kloset: $("$KLOSET" version 2>&1 | head -1) ($(git -C "$ROOT" rev-parse --short HEAD))"
    fi
    command -v restic >/dev/null && echo "restic: $(restic version)"
    command -v rustic >/dev/null && echo "rustic: $(rustic --version)"
    command -v s3s-fs >/dev/null && echo "s3s-fs: $(s3s-fs --version 2>/dev/null)"
    true
} >"$WORK/machine.txt"
cat "$WORK/machine.txt" >&2

# --- S3 -----------------------------------------------------------------------
S3_PID=
stop_s3() { [[ -n "$S3_PID" ]] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null || true; }
cleanup() {
    stop_s3
    mountpoint -q "$WORK/restore/out" 2>/dev/null && umount "$WORK/restore/out"
    true
}
trap cleanup EXIT
if has_s3; then
    S3_PORT=39123
    rm -rf "$WORK/s3" && mkdir -p "$WORK/s3/bench"
    RUST_LOG=warn,s3s::service=debug s3s-fs --host 127.0.0.1 --port "$S3_PORT" \
        --access-key bench --secret-key benchsecret "$WORK/s3" >"$WORK/log/s3s-fs.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 100); do
        (echo >/dev/tcp/127.0.0.1/$S3_PORT) 2>/dev/null && break
        sleep 0.1
    done
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true
fi
# Requests the S3 server has served so far (one log line per request).
s3_requests() { if has_s3; then grep -c 'req: Request {' "$WORK/log/s3s-fs.log" || true; else echo 0; fi; }

# --- One tool, one store ---------------------------------------------------------
store_of() { # tool corpus
    case "$1" in
    *-s3) echo "${1%-s3}-$2" ;;
    *) echo "$WORK/stores/$1-$2" ;;
    esac
}
run_tool() { # tool corpus verb [args]
    local tool=$1 corpus=$2 verb=$3 src="$WORK/corpus/$2" store
    store=$(store_of "$tool" "$corpus")
    shift 3
    case "$tool" in
    kloset | kloset-s3)
        local at=$store
        [[ $tool == kloset-s3 ]] && at="s3://bench/$store"
        case "$verb" in
        init) "$KLOSET" at "$at" create ;;
        backup) "$KLOSET" at "$at" backup "$src" ;;
        restore) "$KLOSET" at "$at" restore -to "$1" latest ;;
        check) "$KLOSET" at "$at" check --read-data ;;
        esac
        ;;
    restic | restic-s3 | rustic | rustic-s3)
        local bin=${tool%-s3} repo=$store
        [[ $tool == *-s3 ]] && repo="s3:$AWS_ENDPOINT_URL/bench/$store"
        case "$verb" in
        init) "$bin" -r "$repo" init ;;
        backup) "$bin" -r "$repo" backup "$src" ;;
        restore)
            if [[ $bin == restic ]]; then
                "$bin" -r "$repo" restore latest --target "$1" # 0.14 has no latest:PATH
            else
                "$bin" -r "$repo" restore "latest:$src" "$1"
            fi
            ;;
        check) "$bin" -r "$repo" check --read-data ;;
        esac
        ;;
    *) echo "unknown tool $tool" >&2; return 2 ;;
    esac
}
store_bytes() { # tool corpus
    local store
    store=$(store_of "$1" "$2")
    case "$1" in
    *-s3) du -sb "$WORK/s3/bench/$store" | cut -f1 ;;
    *) du -sb "$store" | cut -f1 ;;
    esac
}

# measure runs steps in a child bash, under /usr/bin/time.
export -f run_tool store_of
export KLOSET WORK

# Runs a command under /usr/bin/time and appends one row to results.tsv.
measure() { # corpus tool step command...
    local corpus=$1 tool=$2 step=$3 before after bytes=""
    shift 3
    sync
    before=$(s3_requests)
    log "$corpus / $tool / $step"
    if ! /usr/bin/time -f '%e\t%U\t%S\t%M' -o "$WORK/time.out" bash -c '"$@"' _ "$@" \
        >"$WORK/log/$corpus-$tool-$step.log" 2>&1; then
        echo "FAILED: $corpus / $tool / $step (log: $WORK/log/$corpus-$tool-$step.log)" >&2
        tail -5 "$WORK/log/$corpus-$tool-$step.log" >&2
        exit 1
    fi
    after=$(s3_requests)
    [[ $step == restore ]] || bytes=$(du -sb "$WORK/corpus/$corpus" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$corpus" "$tool" "$step" "$(tail -1 "$WORK/time.out")" \
        "$bytes" "$((after - before))" >>"$RESULTS"
}

# Every restore (and tar x) writes into a file system of its own: on a
# disk where millions of files were just created and deleted, ext4 spends
# most of a small-file restore in inode allocation (recently_deleted() and
# the buffer lookups under it), more for whoever comes later, so tools
# restoring into the same file system one after the other were not
# compared fairly. As root with mkfs.ext4: a fresh sparse ext4 image,
# loop-mounted on the target. Otherwise: an empty directory, 35 s after the
# last deletion (which was not enough on that disk).
fresh_target() { # dir files
    local dir=$1 files=$2
    mkdir -p "$dir"
    if [[ $EUID -eq 0 ]] && command -v mkfs.ext4 >/dev/null; then
        local img="$WORK/restore/target.img" size
        size=$(($(du -sb "$src" | cut -f1) * 2 + (4 << 30)))
        rm -f "$img"
        truncate -s "$size" "$img"
        mkfs.ext4 -q -F -N $((files + files / 5 + 10000)) "$img"
        mount -o loop "$img" "$dir"
        rmdir "$dir/lost+found" # the restored tree must equal the corpus
    else
        sync
        sleep 35
    fi
}
release_target() { # dir
    if mountpoint -q "$1"; then
        umount "$1"
        rm -f "$WORK/restore/target.img"
    fi
    rm -rf "$1"
}

drop_dentries() {
    sync
    if [[ $EUID -eq 0 ]]; then echo 2 >/proc/sys/vm/drop_caches; fi
}

# --- The run -----------------------------------------------------------------------
for corpus in "${CORPUS_LIST[@]}"; do
    src="$WORK/corpus/$corpus"
    log "corpus $corpus"
    rm -rf "$src"
    case "$corpus" in
    small) python3 "$ROOT/bench/corpus.py" small "$src" "$SMALL_FILES" ;;
    *) python3 "$ROOT/bench/corpus.py" "$corpus" "$src" ;;
    esac
    for tool in "${TOOL_LIST[@]}"; do
        store=$(store_of "$tool" "$corpus")
        [[ $tool == *-s3 ]] && rm -rf "$WORK/s3/bench/$store" || rm -rf "$store"
        run_tool "$tool" "$corpus" init >"$WORK/log/$corpus-$tool-init.log" 2>&1
        measure "$corpus" "$tool" initial run_tool "$tool" "$corpus" backup
        measure "$corpus" "$tool" unchanged run_tool "$tool" "$corpus" backup
        if [[ $EUID -eq 0 ]]; then
            drop_dentries
            measure "$corpus" "$tool" unchanged-cold run_tool "$tool" "$corpus" backup
        fi
    done
    python3 "$ROOT/bench/corpus.py" mutate "$src"
    for tool in "${TOOL_LIST[@]}"; do
        measure "$corpus" "$tool" changed run_tool "$tool" "$corpus" backup
        printf '%s\t%s\tstore\t\t\t\t\t%s\t\n' "$corpus" "$tool" "$(store_bytes "$tool" "$corpus")" >>"$RESULTS"
    done
    # Restores, verified bit-exact; tar x of the same tree beside them.
    tar -cf "$WORK/restore/$corpus.tar" -C "$src" .
    dst="$WORK/restore/out"
    entries=$(find "$src" | wc -l)
    release_target "$dst"
    fresh_target "$dst" "$entries"
    measure "$corpus" "tar x" restore tar -xf "$WORK/restore/$corpus.tar" -C "$dst"
    release_target "$dst"
    rm -f "$WORK/restore/$corpus.tar"
    for tool in "${TOOL_LIST[@]}"; do
        fresh_target "$dst" "$entries"
        measure "$corpus" "$tool" restore run_tool "$tool" "$corpus" restore "$dst"
        out="$dst"
        [[ $tool == restic* ]] && out="$dst$src" # restic 0.14 keeps the path below the target
        log "verifying the $tool restore (diff -r)"
        if ! diff -r --no-dereference "$src" "$out" >"$WORK/log/$corpus-$tool-diff.log" 2>&1; then
            echo "RESTORE DIFFERS: $corpus / $tool (log: $WORK/log/$corpus-$tool-diff.log)" >&2
            exit 1
        fi
        release_target "$dst"
    done
    for tool in "${TOOL_LIST[@]}"; do
        # restic 0.14's check lists packs in a way s3s-fs answers with
        # nothing ("pack … does not exist"), though backup and restore work.
        [[ $tool == restic-s3 || $tool == rustic-s3 ]] && continue
        measure "$corpus" "$tool" check run_tool "$tool" "$corpus" check
    done
    rm -rf "$src"
done

python3 "$ROOT/bench/table.py" "$RESULTS" "$WORK/machine.txt" | tee "$WORK/results.md"
