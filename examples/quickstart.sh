#!/usr/bin/env bash
# Quick start for the kloset engine: build, then back up this repository's
# sources into a local store under .klosetd/, list, check and restore them.
# Run from the repository root. Safe to run again (it starts from scratch).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin kloset
kloset() { ./target/release/kloset "$@"; }
export KLOSET_PASSPHRASE="${KLOSET_PASSPHRASE:-quickstart demo passphrase}"
demo=.klosetd/quickstart
rm -rf "$demo"
mkdir -p "$demo"
set -x
kloset at "$demo/store" create
kloset at "$demo/store" backup kloset --tag quickstart
kloset at "$demo/store" backup kloset --tag quickstart   # incremental: nothing re-read
kloset at "$demo/store" ls
kloset at "$demo/store" ls latest:/src
kloset at "$demo/store" cat latest:/Cargo.toml | head -n 3
kloset at "$demo/store" check --read-data
kloset at "$demo/store" restore -to "$demo/restored" latest
diff -r kloset "$demo/restored"
kloset at "$demo/store" info
