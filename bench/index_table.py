#!/usr/bin/env python3
"""Tables (and an SVG plot) from bench/index_scale.sh's results.

    index_table.py RESULTS.tsv [--svg OUT.svg]

Prints a markdown table: per index size, the index objects' size, the
on-disk cache's bytes per blob, and wall time / peak RSS of building the
cache, opening the store and backing up 1,000 files, with the index on
disk and (where measured) in memory. --svg draws peak RSS and wall time
against the number of blobs (log scale), one line per step and index.
"""
import csv
import math
import sys
from collections import defaultdict


def load(path):
    rows = defaultdict(dict)
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            blobs = int(r["blobs"])
            if r["step"] in ("cache-bytes", "index-object-bytes"):
                rows[blobs][r["step"]] = int(r["wall_s"])
            else:
                rows[blobs][(r["step"], r["index"])] = (
                    float(r["wall_s"]),
                    int(r["max_rss_kib"]) / 1024,
                )
    return rows


def cell(v):
    return "–" if v is None else f"{v[0]:.2f} s, {v[1]:.0f} MiB"


def table(rows):
    print("| blobs | index objects | cache on disk | build cache | open (disk) | backup 1,000 files (disk) | open (memory) | backup (memory) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for blobs in sorted(rows):
        r = rows[blobs]
        per_blob = r.get("cache-bytes", 0) / blobs
        print(
            f"| {blobs:,} | {r.get('index-object-bytes', 0) / 1e9:.2f} GB | {per_blob:.1f} B/blob "
            f"| {cell(r.get(('build', 'disk')))} | {cell(r.get(('open', 'disk')))} "
            f"| {cell(r.get(('backup', 'disk')))} | {cell(r.get(('open', 'memory')))} "
            f"| {cell(r.get(('backup', 'memory')))} |"
        )


SERIES = [
    (("build", "disk"), "build cache", "#888888"),
    (("open", "disk"), "open, on disk", "#1f77b4"),
    (("backup", "disk"), "backup, on disk", "#2ca02c"),
    (("open", "memory"), "open, in memory", "#d62728"),
    (("backup", "memory"), "backup, in memory", "#ff7f0e"),
]


def panel(rows, which, title, unit, x0, width, height):
    """One log-log panel: which=0 for wall time, 1 for RSS."""
    xs = sorted(rows)
    values = [rows[b][k][which] for b in xs for k, _, _ in SERIES if k in rows[b]]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    vlo, vhi = math.log10(max(min(values), 1e-3)), math.log10(max(values))
    hi = hi if hi > lo else lo + 1
    vlo, vhi = math.floor(vlo), math.ceil(vhi) if math.ceil(vhi) > math.floor(vlo) else math.floor(vlo) + 1
    pad = 50
    px = lambda b: x0 + pad + (math.log10(b) - lo) / (hi - lo) * (width - 2 * pad)
    py = lambda v: height - pad - (math.log10(max(v, 1e-3)) - vlo) / (vhi - vlo) * (height - 2 * pad)
    out = [f'<text x="{x0 + width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    out.append(f'<line x1="{x0 + pad}" y1="{height - pad}" x2="{x0 + width - pad}" y2="{height - pad}" stroke="black"/>')
    out.append(f'<line x1="{x0 + pad}" y1="{pad}" x2="{x0 + pad}" y2="{height - pad}" stroke="black"/>')
    for b in xs:
        out.append(f'<text x="{px(b)}" y="{height - pad + 16}" text-anchor="middle" font-size="11">{b / 1e6:g}M</text>')
    for e in range(vlo, vhi + 1):
        v = 10**e
        out.append(f'<line x1="{x0 + pad - 4}" y1="{py(v)}" x2="{x0 + width - pad}" y2="{py(v)}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x0 + pad - 6}" y="{py(v) + 4}" text-anchor="end" font-size="11">{v:g} {unit}</text>')
    for key, name, color in SERIES:
        pts = [(px(b), py(rows[b][key][which])) for b in xs if key in rows[b]]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    return out


def svg(rows, path):
    width, height = 460, 320
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height + 40}" font-family="sans-serif">']
    parts.append(f'<rect width="{2 * width}" height="{height + 40}" fill="white"/>')
    parts += panel(rows, 1, "peak RSS against blobs in the index", "MiB", 0, width, height)
    parts += panel(rows, 0, "wall time against blobs in the index", "s", width, width, height)
    x = 20
    for _, name, color in SERIES:
        parts.append(f'<rect x="{x}" y="{height + 15}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 16}" y="{height + 25}" font-size="12">{name}</text>')
        x += 40 + 7 * len(name)
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    rows = load(args[0])
    table(rows)
    if "--svg" in args:
        svg(rows, args[args.index("--svg") + 1])


if __name__ == "__main__":
    main()
