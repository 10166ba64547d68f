#!/usr/bin/env python3
"""unravel's SynthSAEBench generator (`unravel synth --preset synth-sae-bench-16k`) against
SAELens's own (`sae_lens.synthetic.SyntheticModel` with the SynthSAEBench-16k config, from
SAELens's docs/synth_sae_bench.md).

Compared:
- exactly (same formulas, no randomness): the compensated firing probabilities, the mean
  magnitudes, the hierarchy (every feature's parent);
- in distribution (each side draws its own random numbers), on ROWS samples each: true L0,
  L0 among the first 4096 features, the frequency curve (mean measured frequency per group of
  features: hierarchy level, then log-spaced index bins outside the hierarchy), the per-feature
  frequencies (mean |difference|, correlation), the hierarchy's rules (children firing without
  their parent; exclusive siblings firing together: both must be 0), and the magnitude stds;
- the orthogonalised dictionary on a smaller size (FEATURES_ORTHO × DIMS_ORTHO, the preset's
  100 steps at lr 3e-4; SAELens's chunked n×n Gram is too slow for 16k on a CPU): mean cos² and
  max |cos| over all pairs, and the same for random unit directions.

    python3 -m venv /tmp/saelens-venv && /tmp/saelens-venv/bin/pip install sae-lens
    cargo build --release
    /tmp/saelens-venv/bin/python scripts/synth_bench_vs_saelens.py [--rows 100000]

Never run in CI. Prints a Markdown report for BENCHMARKS.md.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/unravel")


def saelens_config(orthogonalize):
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        LowRankCorrelationConfig,
        OrthogonalizationConfig,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )

    return SyntheticModelConfig(
        num_features=16_384,
        hidden_dim=768,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=5e-4),
        hierarchy=HierarchyConfig(
            total_root_nodes=128,
            branching_factor=4,
            max_depth=3,
            mutually_exclusive_portion=1.0,
            mutually_exclusive_min_depth=0,
            compensate_probabilities=True,
            scale_children_by_parent=True,
        ),
        orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4) if orthogonalize else None,
        correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5,
        seed=42,
    )


def parents_of(roots, n):
    parent = np.full(n, -1, dtype=np.int64)
    exclusive = {}
    stack = [(r, -1) for r in roots]
    while stack:
        node, p = stack.pop()
        if node.feature_index is not None:
            parent[node.feature_index] = p
        kids = [c.feature_index for c in node.children]
        if node.mutually_exclusive_children and len(kids) >= 2:
            exclusive[node.feature_index] = kids
        stack.extend((c, node.feature_index) for c in node.children)
    return parent, exclusive


def saelens_stats(rows, batch=2048):
    from sae_lens.synthetic import SyntheticModel

    torch.manual_seed(0)
    model = SyntheticModel(saelens_config(orthogonalize=False))
    gen = model.activation_generator
    n = gen.num_features
    parent, exclusive = parents_of(model.hierarchy.roots, n)
    fired = np.zeros(n)
    l0 = l0_first = orphans = violations = 0
    for start in range(0, rows, batch):
        b = min(batch, rows - start)
        acts = gen.sample(b).numpy() > 0
        fired += acts.sum(0)
        l0 += acts.sum()
        l0_first += acts[:, :4096].sum()
        has_parent = parent >= 0
        child_active = acts[:, has_parent]
        parent_active = acts[:, parent[has_parent]]
        orphans += int((child_active & ~parent_active).sum())
        for kids in exclusive.values():
            violations += int((acts[:, kids].sum(1) > 1).sum())
    return {
        "rows": rows,
        "l0": l0 / rows,
        "l0_first_4096": l0_first / rows,
        "frequencies": fired / rows,
        "orphans": orphans,
        "exclusion_violations": violations,
        "probabilities": gen.firing_probabilities.numpy().astype(np.float64),
        "mean_magnitudes": gen.mean_firing_magnitudes.numpy(),
        "std_magnitudes": gen.std_firing_magnitudes.numpy(),
        "parent": parent,
    }


def ours(rows, tmp):
    out = os.path.join(tmp, "ours")
    t0 = time.time()
    subprocess.run(
        [BIN, "synth", "--preset", "synth-sae-bench-16k", "--tokens", str(rows), "--out", out],
        check=True,
    )
    secs = time.time() - t0
    stats = json.load(open(os.path.join(out, "__unravel__/truth/stats.json")))
    truth = load_file(os.path.join(out, "__unravel__/truth/ground_truth.safetensors"))
    stats["frequencies"] = np.array(stats["frequencies"])
    for k in ["probabilities", "mean_magnitudes", "std_magnitudes", "parent", "directions"]:
        stats[k] = truth[k]
    stats["seconds"] = secs
    return stats


def cosine_stats(e):
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    g = e @ e.T
    np.fill_diagonal(g, 0)
    n = len(e)
    return (g**2).sum() / (n * (n - 1)), np.abs(g).max()


def ortho_comparison(tmp, n, d):
    from sae_lens.synthetic import FeatureDictionary
    from sae_lens.synthetic.feature_dictionary import orthogonal_initializer

    fd = FeatureDictionary(n, d, bias=0.5, initializer=orthogonal_initializer(num_steps=100, lr=3e-4), seed=42)
    theirs = cosine_stats(fd.feature_vectors.detach().numpy())
    rand = FeatureDictionary(n, d, bias=0.5, initializer=None, seed=42)
    random_dirs = cosine_stats(rand.feature_vectors.detach().numpy())
    out = os.path.join(tmp, "ortho")
    subprocess.run(
        [BIN, "synth", "--preset", "synth-sae-bench-16k", "--features", str(n), "--dims", str(d),
         "--tokens", "64", "--out", out],
        check=True, stdout=subprocess.DEVNULL,
    )
    mine = cosine_stats(load_file(os.path.join(out, "__unravel__/truth/ground_truth.safetensors"))["directions"])
    return theirs, mine, random_dirs


def groups(parent, n):
    """(name, feature indices): hierarchy levels, then log bins of the features outside."""
    level = np.full(n, -1)
    in_h = np.zeros(n, bool)
    for f in range(n):
        if parent[f] >= 0 or (f < 128):
            in_h[f] = True
    for f in range(n):
        if in_h[f]:
            k, p = 0, parent[f]
            while p >= 0:
                k, p = k + 1, parent[p]
            level[f] = k
    out = [(f"hierarchy level {k}", np.where(level == k)[0]) for k in range(level.max() + 1)]
    free = np.where(~in_h)[0]
    edges = np.unique(np.geomspace(free[0], n, 6).astype(int))
    for a, b in zip(edges[:-1], edges[1:]):
        out.append((f"outside, features {a}..{b}", free[(free >= a) & (free < b)]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--ortho-features", type=int, default=2048)
    ap.add_argument("--ortho-dims", type=int, default=128)
    ap.add_argument("--saelens-cache", help="an .npz file keeping SAELens's side (computed when absent)")
    ap.add_argument("--saelens-only", action="store_true", help="compute SAELens's side into --saelens-cache, stop")
    args = ap.parse_args()
    torch.set_num_threads(2)
    import sae_lens

    with tempfile.TemporaryDirectory() as tmp:
        if args.saelens_cache and os.path.exists(args.saelens_cache):
            z = np.load(args.saelens_cache)
            a = {k: z[k] for k in z.files}
            a = {k: (v.item() if v.ndim == 0 else v) for k, v in a.items()}
        else:
            t0 = time.time()
            a = saelens_stats(args.rows)
            a["seconds"] = time.time() - t0
            if args.saelens_cache:
                np.savez(args.saelens_cache, **a)
        if args.saelens_only:
            return 0
        t_saelens = a["seconds"]
        args.rows = int(a["rows"])
        b = ours(args.rows, tmp)
        ortho = ortho_comparison(tmp, args.ortho_features, args.ortho_dims)

    n = len(a["frequencies"])
    print(f"### SynthSAEBench-16k: unravel vs SAELens {sae_lens.__version__} ({args.rows} rows each)\n")
    print("Exact (same formulas):\n")
    dp = np.abs(a["probabilities"] - b["probabilities"].astype(np.float64))
    print(f"- compensated firing probabilities: max |difference| {dp.max():.2e} "
          f"(max relative {(dp / a['probabilities']).max():.2e})")
    print(f"- mean magnitudes: max |difference| {np.abs(a['mean_magnitudes'] - b['mean_magnitudes']).max():.2e}")
    print(f"- hierarchy parents: {int((a['parent'] == b['parent']).sum())} of {n} features agree\n")
    print("In distribution:\n")
    print("| statistic | SAELens | unravel |")
    print("|---|---|---|")
    print(f"| true L0 | {a['l0']:.3f} | {b['l0']:.3f} |")
    print(f"| L0 among the first 4096 | {a['l0_first_4096']:.3f} | {b['l0_first_4096']:.3f} |")
    print(f"| children firing without their parent | {a['orphans']} | {b['orphans']} |")
    print(f"| exclusive siblings firing together | {a['exclusion_violations']} | {b['exclusion_violations']} |")
    for name, v in [("mean", np.mean), ("std", np.std)]:
        print(f"| magnitude std across features: {name} | {v(a['std_magnitudes']):.4f} | {v(b['std_magnitudes']):.4f} |")
    print("\nFrequency curve (mean measured firing frequency per group):\n")
    print("| features | count | SAELens | unravel | relative difference |")
    print("|---|---|---|---|---|")
    for name, idx in groups(a["parent"], n):
        fa, fb = a["frequencies"][idx].mean(), b["frequencies"][idx].mean()
        print(f"| {name} | {len(idx)} | {fa:.5f} | {fb:.5f} | {(fb - fa) / fa:+.2%} |")
    fa, fb = a["frequencies"], b["frequencies"]
    print(f"\nPer feature: mean |difference| {np.abs(fa - fb).mean():.2e} (mean frequency {fa.mean():.2e}); "
          f"correlation {np.corrcoef(fa, fb)[0, 1]:.5f}; "
          f"features whose difference exceeds 5 binomial std: "
          f"{int((np.abs(fa - fb) > 5 * np.sqrt(2 * fa * (1 - fa) / args.rows) + 1e-5).sum())} of {n}\n")
    (ta, tm), (ma, mm), (ra, rm) = ortho
    print(f"Orthogonalised dictionary, {args.ortho_features} features in {args.ortho_dims} dims, 100 steps at lr 3e-4:\n")
    print("| directions | mean cos² | max abs cos |")
    print("|---|---|---|")
    print(f"| random unit (before) | {ra:.5f} | {rm:.4f} |")
    print(f"| SAELens | {ta:.5f} | {tm:.4f} |")
    print(f"| unravel | {ma:.5f} | {mm:.4f} |")
    print(f"\nTime: SAELens sampling {t_saelens:.0f}s (no orthogonalisation); unravel `synth` (release, "
          f"with the 16k orthogonalisation, writing shards) {b['seconds']:.0f}s.")


if __name__ == "__main__":
    sys.exit(main())
