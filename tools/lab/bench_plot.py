#!/usr/bin/env python3
"""Draw build/bench/results.json (bench_virtio.py's figures) as build/bench/curves.png.

One row per guest configuration: inflation time against size (both drivers
and the zeroing limit), deflation time against size, and the guest
workload's speed during inflation. Points are medians; bars span the rounds'
min-max. Needs python3-matplotlib (bench.sh installs it on demand).

    tools/lab/bench_plot.py [results.json [curves.png]]
"""
import json
import statistics
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parent.parent.parent / "build" / "bench"
STYLE = {"in-tree": ("tab:red", "o"), "uniballoon": ("tab:blue", "s"), "limit": ("0.2", "^")}


def series(rows, sizes, key):
    """Medians and (lower, upper) error bars of key per size, None where unknown."""
    med, lo, hi, xs = [], [], [], []
    for s in sizes:
        v = [r[str(s)].get(key) for r in rows]
        v = [x for x in v if x is not None]
        if not v:
            continue
        m = statistics.median(v)
        xs.append(s / (1 << 30))
        med.append(m)
        lo.append(m - min(v))
        hi.append(max(v) - m)
    return xs, med, [lo, hi]


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT / "results.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else OUT / "curves.png"
    res = json.loads(src.read_text())
    cfgs = res["configs"]
    fig, axes = plt.subplots(len(cfgs), 3, figsize=(15, 4.2 * len(cfgs)), squeeze=False)
    for row, cfg in zip(axes, cfgs):
        sizes, rounds = cfg["sizes"], cfg["rounds"]
        ax_i, ax_d, ax_w = row
        for d in ("in-tree", "uniballoon"):
            color, mark = STYLE[d]
            for ax, key in ((ax_i, "inflate"), (ax_d, "deflate"), (ax_w, "workload")):
                xs, med, err = series(rounds[d], sizes, key)
                if xs:
                    ax.errorbar(xs, med, yerr=err, color=color, marker=mark, capsize=3, label=d)
        # the limit only; its 4 KiB and 2 MiB parts are in curves.md
        for key, style, label in (("limit", "--", "limit: fault in and zero, no balloon"),):
            xs, med, err = series(rounds["in-tree"] + rounds["uniballoon"], sizes, key)
            color, mark = STYLE["limit"]
            if xs:
                ax_i.errorbar(xs, med, yerr=err, color=color, marker=mark, linestyle=style, capsize=3,
                              label=label)
        ax_i.set_title(f"{cfg['title']}: inflate")
        ax_d.set_title(f"{cfg['title']}: deflate")
        ax_w.set_title("guest workload speed while inflating")
        ax_w.axhline(1.0, color="0.7", linewidth=0.8)
        ax_w.set_ylim(bottom=0)
        for ax in (ax_i, ax_d):
            ax.set_ylabel("seconds")
            ax.set_ylim(bottom=0)
        ax_w.set_ylabel("rate / quiet rate (missing: too short to measure)")
        for ax in row:
            ax.set_xlabel("balloon size (GiB)")
            ax.set_xticks([s / (1 << 30) for s in sizes])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"uniballoon against the in-tree virtio_balloon, guest kernel {res['kernel']}, "
                 f"{res['rounds']} round(s), medians and min-max ({res['date']})")
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=90)
    print(f"bench_plot: wrote {dst}")


if __name__ == "__main__":
    main()
