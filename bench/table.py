#!/usr/bin/env python3
"""Prints bench/compare.sh's results.tsv as markdown tables with ratios.

  table.py RESULTS.tsv [MACHINE.txt]

Per corpus: one row per step, one column per tool ("wall s, CPU s, peak MiB"),
then kloset's wall time over the best peer's (restic, rustic) and, for the
restore, over `tar x`. When S3 tools ran: kloset on S3 against kloset on local
disk, with MB/s and requests per GB of corpus.
"""
import csv
import sys
from collections import defaultdict

STEPS = ["initial", "unchanged", "unchanged-cold", "changed", "restore", "check", "store"]
PEERS = ["restic", "rustic"]


def fmt_row(r):
    if r["step"] == "store":
        return f"{int(r['bytes']) / 1e6:,.1f} MB"
    cpu = float(r["user_s"]) + float(r["sys_s"])
    return f"{float(r['wall_s']):.2f} s, {cpu:.1f} s CPU, {int(r['max_rss_kib']) / 1024:,.0f} MiB"


def value(r):
    return float(r["bytes"]) if r["step"] == "store" else float(r["wall_s"])


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    if len(sys.argv) > 2:
        print("```")
        print(open(sys.argv[2]).read().rstrip())
        print("```\n")
    by = defaultdict(dict)
    tools = defaultdict(list)
    for r in rows:
        by[r["corpus"]][(r["tool"], r["step"])] = r
        if r["tool"] not in tools[r["corpus"]]:
            tools[r["corpus"]].append(r["tool"])
    for corpus, cells in by.items():
        names = [t for t in tools[corpus] if t != "tar x"]
        print(f"### {corpus}\n")
        print("| step | " + " | ".join(names) + " | kloset / best peer |")
        print("|---" * (len(names) + 2) + "|")
        for step in STEPS:
            if not any((t, step) in cells for t in names):
                continue
            line = [step]
            for t in names:
                r = cells.get((t, step))
                line.append(fmt_row(r) if r else "")
            mine = cells.get(("kloset", step))
            peers = [value(cells[(p, step)]) for p in PEERS if (p, step) in cells]
            ratio = f"{value(mine) / min(peers):.2f}" if mine and peers and min(peers) > 0 else ""
            tar = cells.get(("tar x", step))
            if mine and tar:
                ratio += f" (tar x: {value(tar):.2f} s, kloset / tar x {value(mine) / value(tar):.2f})"
            line.append(ratio)
            print("| " + " | ".join(line) + " |")
        print()
        s3 = [t for t in names if t.endswith("-s3")]
        if s3:
            print(f"#### {corpus} on S3 (loopback s3s-fs)\n")
            print("| step | tool | wall | MB/s of corpus | requests | requests per GB | S3 / local disk |")
            print("|---|---|---|---|---|---|---|")
            for step in ["initial", "unchanged", "changed", "restore", "check"]:
                for t in s3:
                    r = cells.get((t, step))
                    if not r:
                        continue
                    size = next(
                        (float(x["bytes"]) for (tt, st), x in cells.items() if x["bytes"] and st != "store"),
                        0.0,
                    )
                    wall = float(r["wall_s"])
                    req = int(r["requests"] or 0)
                    local = cells.get((t[: -len("-s3")], step))
                    ratio = f"{wall / float(local['wall_s']):.2f}" if local else ""
                    mbs = f"{size / 1e6 / wall:,.0f}" if size and wall else ""
                    per_gb = f"{req / (size / 1e9):,.0f}" if size else ""
                    print(f"| {step} | {t} | {wall:.2f} s | {mbs} | {req:,} | {per_gb} | {ratio} |")
            print()


if __name__ == "__main__":
    main()
