#!/usr/bin/python3
"""Throughput against micro-batches M, one panel per (model, S), next to the GPipe ideal.

Reads the CSV written by bench/bench_throughput.sh (columns: model, placement, S, M, requests,
tokens, tokens_per_s, busy) and writes a PNG. The ideal curve is M/(M+S-1) scaled so that it passes
through the measured M = 1 point of the same (model, placement, S): at M = 1 one micro-batch keeps
1/S of the stages busy, so ideal(M) = tps(M=1) * S * M / (M + S - 1).

Usage: /usr/bin/python3 bench/plot_throughput.py bench/throughput.csv bench/throughput.png [TITLE]
Needs matplotlib (Debian: apt-get install python3-matplotlib; bench-only, not in scripts/setup.sh).
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def load(path):
    rows = defaultdict(dict)  # (model, placement, S) -> {M: tokens/s}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[(r["model"], r["placement"], int(r["S"]))][int(r["M"])] = float(r["tokens_per_s"])
    return rows


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    models = sorted({k[0] for k in rows}, key=lambda m: list(k[0] for k in rows).index(m))
    stages = sorted({k[2] for k in rows})
    fig, axes = plt.subplots(len(models), len(stages), figsize=(4.2 * len(stages), 3.4 * len(models)),
                             squeeze=False)
    styles = {"balanced_work": ("o-", "C0"), "balanced": ("s--", "C1")}
    for i, model in enumerate(models):
        for j, s in enumerate(stages):
            ax = axes[i][j]
            ideal_done = False
            for (m_, placement, s_), pts in sorted(rows.items()):
                if m_ != model or s_ != s or not pts:
                    continue
                ms = sorted(pts)
                style, color = styles.get(placement, ("^-", "C2"))
                ax.plot(ms, [pts[m] for m in ms], style, color=color, label=f"measured ({placement})")
                if 1 in pts and not ideal_done and placement == "balanced_work":
                    ideal = [pts[1] * s * m / (m + s - 1) for m in ms]
                    ax.plot(ms, ideal, ":", color="gray", label="ideal M/(M+S-1), scaled at M=1")
                    ideal_done = True
                    if s == 2:
                        ax.axhline(1.5 * pts[1], color="C3", lw=0.8, ls="-.", label="issue #7 target: 1.5 x M=1")
            if not any(k[0] == model and k[2] == s for k in rows):
                ax.axis("off")
                continue
            ax.set_title(f"{model}, S = {s}", fontsize=9)
            ax.set_xlabel("micro-batches in flight M")
            ax.set_ylabel("generated tokens/s")
            ax.set_ylim(bottom=0)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    title = sys.argv[3] if len(sys.argv) > 3 else "glmpipe throughput vs micro-batches (CPU ranks, 1 thread each)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=80)


if __name__ == "__main__":
    main()
