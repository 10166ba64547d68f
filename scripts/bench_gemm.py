#!/usr/bin/env python3
"""f32 GEMM throughput at the forward pass's shapes: unravel (the `gemm` call our fused linear
makes, examples/gemm_bench.rs) beside PyTorch's `x @ w.T` (nn.Linear's layout), 2 threads each,
alternating rounds in one run.

    cargo build --release --example gemm_bench
    python3 scripts/bench_gemm.py --rounds 3 --iters 20

Prints a markdown table of median GFLOP/s per shape (B read transposed, as nn.Linear stores it).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "examples", "gemm_bench")
SHAPES = [(1024, 2304, 768), (1024, 768, 768), (1024, 3072, 768), (1024, 768, 3072)]


def run_ours(iters):
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    out = subprocess.run([BIN, str(iters)], env=env, capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {(r["m"], r["n"], r["k"]): r["gflops"] for r in rows if r["b"] == "nk"}


def run_torch(iters):
    import torch

    torch.set_num_threads(2)
    result = {}
    for m, n, k in SHAPES:
        a = torch.randn(m, k)
        w = torch.randn(n, k)
        times = []
        with torch.inference_mode():
            for i in range(iters + 2):
                t0 = time.perf_counter()
                a @ w.T
                if i >= 2:
                    times.append(time.perf_counter() - t0)
        times.sort()
        result[(m, n, k)] = 2 * m * n * k / times[len(times) // 2] / 1e9
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release --example gemm_bench")
    ours, torch_runs = [], []
    for _ in range(a.rounds):
        torch_runs.append(run_torch(a.iters))
        ours.append(run_ours(a.iters))

    def median(runs, shape):
        xs = sorted(r[shape] for r in runs)
        return xs[len(xs) // 2]

    print("| m × n × k (B as [n, k]) | PyTorch GFLOP/s | unravel GFLOP/s | ratio |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        pt, un = median(torch_runs, shape), median(ours, shape)
        print(f"| {shape[0]} × {shape[1]} × {shape[2]} | {pt:.0f} | {un:.0f} | {un / pt:.2f}x |")


if __name__ == "__main__":
    main()
