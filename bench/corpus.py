#!/usr/bin/env python3
"""Deterministic corpora and mutations for bench/compare.sh.

  corpus.py sysroot DEST        copy of `rustc --print sysroot` (hard links are copied as files)
  corpus.py small DEST [N]      N files (default 1,000,000) of 0-2,048 random bytes in N/1000 dirs,
                                from random.Random(1): the layout of shared/bench/PEERS.md
  corpus.py large DEST [MiB]    one file (default 1024 MiB): the sysroot as a sorted tar stream,
                                cut at that size (realistic mixed content: binaries, text, archives)
  corpus.py mutate DIR          the 1% change of PEERS.md: a line appended to every 100th file in
                                sorted order, and 14 bytes overwritten at offset 1,000,000 of the
                                first file over 50 MB
"""
import os
import random
import shutil
import subprocess
import sys


def sysroot(dest):
    src = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    shutil.copytree(src, dest, symlinks=True)


def small(dest, n=1_000_000):
    rng = random.Random(1)
    per_dir = 1000
    os.makedirs(dest)
    for d in range(max(1, n // per_dir)):
        sub = os.path.join(dest, f"d{d:04}")
        os.mkdir(sub)
        for f in range(per_dir):
            size = rng.randint(0, 2048)
            with open(os.path.join(sub, f"f{f:04}"), "wb") as out:
                out.write(rng.randbytes(size))


def large(dest, mib=1024):
    src = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    os.makedirs(dest)
    want = mib << 20
    tar = subprocess.Popen(
        ["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
         "-cf", "-", "-C", src, "."],
        stdout=subprocess.PIPE,
    )
    written = 0
    with open(os.path.join(dest, "big.bin"), "wb") as out:
        while written < want:
            block = tar.stdout.read(min(1 << 20, want - written))
            if not block:
                break
            out.write(block)
            written += len(block)
    tar.kill()
    tar.wait()
    if written < want:
        sys.exit(f"the sysroot tar stream is only {written} bytes, {want} wanted")


def mutate(root):
    files = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            p = os.path.join(d, name)
            if os.path.isfile(p) and not os.path.islink(p):
                files.append(p)
    files.sort()
    for p in files[::100]:
        with open(p, "ab") as f:
            f.write(b"kloset bench: changed\n")
    for p in files:
        if os.path.getsize(p) > 50_000_000:
            with open(p, "r+b") as f:
                f.seek(1_000_000)
                f.write(b"kloset-changed")
            break


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    what, dest = sys.argv[1], sys.argv[2]
    extra = [int(a) for a in sys.argv[3:]]
    {"sysroot": sysroot, "small": small, "large": large, "mutate": mutate}[what](dest, *extra)


if __name__ == "__main__":
    main()
