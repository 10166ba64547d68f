#!/usr/bin/env python3
"""Per-latent precision and recall of `unravel verify --synth` runs, grouped by the firing
probability of the planted feature each latent best matches (BENCHMARKS.md, "50M samples").

    python3 scripts/precision_by_frequency.py RUN [RUN ...]

Reads RUN/verify.json (`features[].frequency`, `samples.latents[]`); no dependencies.
"""

import json
import pathlib
import sys

EDGES = [0.0, 0.002, 0.004, 0.01, 0.03, 1.01]


def main() -> None:
    for run in map(pathlib.Path, sys.argv[1:]):
        v = json.loads((run / "verify.json").read_text())
        freq = {f["feature"]: f["frequency"] for f in v["features"]}
        latents = v["samples"]["latents"]
        print(f"{run}: mean precision {v['samples']['precision']:.3f}, "
              f"recall {v['samples']['recall']:.3f}, F1 {v['samples']['f1']:.3f}")
        print("  matched p        latents  precision  recall")
        for lo, hi in zip(EDGES, EDGES[1:]):
            band = [l for l in latents if lo <= freq[l["feature"]] < hi]
            if not band:
                continue
            p = sum(l["precision"] for l in band) / len(band)
            r = sum(l["recall"] for l in band) / len(band)
            print(f"  {lo:.3f}–{min(hi, 1):.3f}  {len(band):8d}  {p:9.3f}  {r:6.3f}")


if __name__ == "__main__":
    main()
