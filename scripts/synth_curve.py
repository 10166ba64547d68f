#!/usr/bin/env python3
"""MCC and F1 against samples seen on SynthSAEBench-16k (issue 24 item 6's plot).

Each argument is a run folder of `unravel train --synth synth-sae-bench-16k` scored by
`unravel verify --synth synth-sae-bench-16k --sae RUN` (its `eval.json` gives the samples trained,
its `verify.json` the metrics); runs are grouped into one line per recipe and target L0
(`config.toml`). The published 200M-sample rows of SAELens's benchmark are drawn as reference
points at 200M, so the trend towards them is visible.

    python3 scripts/synth_curve.py --out docs/synth_curve.png /tmp/curve/*

Needs matplotlib (scripts/requirements.txt); never run in CI. Prints the table it plots.
"""

import argparse
import json
import pathlib
import re

PUBLISHED = [  # SAELens docs synth_sae_bench.md: width 4096, 200M samples
    ("Standard L1, L0 25", 0.604, 0.556),
    ("Standard L1, L0 20", 0.583, 0.578),
    ("BatchTopK, L0 25", 0.757, 0.732),
    ("Matryoshka, L0 25", 0.793, 0.879),
]


def read_run(run: pathlib.Path):
    verify = json.loads((run / "verify.json").read_text())
    samples = json.loads((run / "eval.json").read_text())["tokens_trained"]
    config = (run / "config.toml").read_text()
    recipe = re.search(r'recipe = "([^"]+)"', config).group(1)
    target = re.search(r"target_l0 = ([0-9.]+)", config)
    label = f"{recipe}, L0 {float(target.group(1)):g}" if target else f"{recipe}, fixed λ"
    anneal = re.search(r"target_l0_anneal = ([0-9.]+)", config)
    if target and anneal and float(anneal.group(1)) > 0:
        label += " annealed"
    start = re.search(r"target_l0_from = ([0-9.]+)", config)
    if target and start:
        label += f" from {float(start.group(1)):g}"
    s = verify["samples"]
    return label, samples, verify["mcc"], s["f1"], s["l0"], s["explained_variance"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args()
    rows = sorted(read_run(r) for r in args.runs if (r / "verify.json").exists())
    print("| run | samples | L0 | F1 | MCC | EV |")
    print("|---|---|---|---|---|---|")
    for label, n, mcc, f1, l0, ev in rows:
        print(f"| {label} | {n / 1e6:.1f}M | {l0:.1f} | {f1:.3f} | {mcc:.3f} | {ev:.3f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4), sharex=True)
    for ax, (name, col) in zip(axes, [("MCC", 2), ("F1", 3)]):
        for label in sorted({r[0] for r in rows}):
            pts = sorted((r[1], r[col]) for r in rows if r[0] == label)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"unravel {label}")
        for i, (label, mcc, f1) in enumerate(PUBLISHED):
            ax.plot([200e6], [mcc if col == 2 else f1], "sD^v"[i], color="black",
                    fillstyle="none", label=f"SAELens {label} (published)")
        ax.set_xscale("log")
        ax.set_xlabel("training samples")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(f"SynthSAEBench-16k, width 4096: {name}")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
