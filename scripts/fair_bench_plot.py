"""Plots the fair benchmark's medians (target/fair-bench/results.csv, from examples/fair_bench.rs).

Usage: fair_bench_plot.py RESULTS_CSV OUTPUT_PNG

One row of panels per kind of calls, one panel per figure (calls per second, time to the last
answer, p99 latency of a call), each as a ratio to the batch against the added round-trip time:
one line per way and path. The batch is the line at 1.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

FIGURES = [
    ("calls_per_sec_vs_batch", "calls/s ÷ batch's\n(above 1: more than the batch)"),
    ("last_answer_vs_batch", "time to the last answer ÷ batch's\n(above 1: slower than the batch)"),
    ("p99_call_vs_batch", "p99 of a call ÷ batch's\n(above 1: slower than the batch)"),
]
WAYS = {
    "http1x6": ("HTTP/1.1, 6 connections", "tab:orange"),
    "http2": ("HTTP/2, 1 connection", "tab:blue"),
}
CALLS = {
    "mixed": "farm calls (4 in 5 read SQLite)",
    "static": "a handler without the database",
}


def main(source, target):
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = [c for c in CALLS if any(r["calls"] == c for r in rows)]
    paths = list(dict.fromkeys(r["path"] for r in rows))
    fig, axes = plt.subplots(
        len(kinds), len(FIGURES), figsize=(14, 4.2 * len(kinds)), squeeze=False
    )
    for row, kind in enumerate(kinds):
        for col, (field, label) in enumerate(FIGURES):
            ax = axes[row][col]
            ax.axhline(1.0, color="black", linewidth=1.5, label="one batch (= 1)")
            for way, (name, color) in WAYS.items():
                for path in paths:
                    points = sorted(
                        (int(r["rtt_ms"]), float(r[field]))
                        for r in rows
                        if r["calls"] == kind and r["way"] == way and r["path"] == path
                    )
                    if not points:
                        continue
                    direct = path == "direct"
                    ax.plot(
                        [p[0] for p in points],
                        [p[1] for p in points],
                        marker="o" if direct else "s",
                        linestyle="-" if direct else "--",
                        color=color,
                        label=f"{name}, {path}",
                    )
            ax.set_yscale("log")
            # Plain numbers on the ratio axis (0.5, 2, 10), not powers of ten.
            plain = ticker.FuncFormatter(lambda y, _: f"{y:g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
            ax.yaxis.set_minor_formatter(plain)
            ax.set_xlabel("added round-trip time (ms)")
            ax.set_ylabel(label)
            ax.set_xticks(sorted({int(r["rtt_ms"]) for r in rows}))
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(CALLS[kind], fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    fig.suptitle("100 calls to the farm: HTTP/1.1 and HTTP/2 as a ratio to one batch (medians of interleaved rounds)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(target, dpi=100)
    print(f"plot: {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
