#!/usr/bin/env python3
"""End-to-end `unravel extract` vs Hugging Face transformers computing the same hidden states.

GPT-2 small with random weights (configs/models/gpt2.json), the 13 residual-stream states
(`blocks.0.hook_resid_pre` + every `hook_resid_post`), contexts of 128, batch 8, f16 shards,
2 threads. PyTorch runs the forward alone (no tokenizing, no storage) over the same number of
tokens; unravel runs the whole pipeline (read, tokenize, pack, forward, f16 + parquet + zstd +
sha256, manifest). Peak RSS of unravel is measured at two corpus sizes to show it does not grow
with the corpus.

    cargo build --release
    python3 scripts/bench_extract.py [--tokens 16384] [--large-tokens 65536]

Needs torch + transformers; never run in CI. Prints a Markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/unravel")
HOOKS = "blocks.0.hook_resid_pre,blocks.*.hook_resid_post"

TORCH_CHILD = r"""
import json, sys, time
import torch
from transformers import AutoConfig, AutoModel
torch.set_num_threads(2)
cfg, tokens = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
config = AutoConfig.from_pretrained(cfg)
model = AutoModel.from_config(config).eval()
b, t = 8, 128
steps = max(1, tokens // (b * t))
ids = (torch.arange(b * t) * 7919 % config.vocab_size).reshape(b, t)
with torch.inference_mode():
    model(input_ids=ids, output_hidden_states=True)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=ids, output_hidden_states=True)
        states = [h.to(torch.float16) for h in out.hidden_states]  # what a store keeps
    secs = time.perf_counter() - t0
print(json.dumps({"tokens": steps * b * t, "seconds": secs, "tokens_per_s": steps * b * t / secs}))
"""


def write_corpus(path, docs, seed=0):
    rng = random.Random(seed)
    words = ("the a of to and in is was for on that with as by at from his her they it this be "
             "are were had have not but one all which their there been has more when will would "
             "city river music science history market water system people years during first new "
             "government between after national united state world school century company war "
             "Paris Tokyo 1969 42 3.14 $20 Apollo Moon data model neuron feature").split()
    with open(path, "w") as f:
        for _ in range(docs):
            n = rng.randint(20, 400)
            text = " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."
            f.write(json.dumps({"text": text}) + "\n")


def run_unravel(corpus, out, tokens):
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-f", "MAXRSS_KB %M", BIN, "extract", "--model", "configs/models/gpt2.json",
           "--random-weights", "--tokenizer", "tests/fixtures/tiny-gpt2/tokenizer.json", "--corpus", corpus,
           "--hooks", HOOKS, "--ctx", "128", "--batch", "8", "--max-tokens", str(tokens), "--store-dtype", "f16",
           "--device", "cpu", "--out", out]
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(p.stderr)
    tps = float(re.search(r"\(([\d.]+) tokens/s\)", p.stdout).group(1))
    busy = re.search(r"forward [\d.]+s \((\d+)% of wall\), tokenize\+pack [\d.]+s \((\d+)%\), write [\d.]+s \((\d+)%\)", p.stdout)
    cpu = re.search(r"write CPU [\d.]+s \((\d+)% of wall\)", p.stdout)
    rss = int(re.search(r"MAXRSS_KB (\d+)", p.stderr).group(1)) / 1024
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    return {"tokens_per_s": tps, "peak_rss_mb": rss, "forward_pct": int(busy.group(1)),
            "pack_pct": int(busy.group(2)), "write_pct": int(busy.group(3)),
            "write_cpu_pct": int(cpu.group(1)), "bytes": size, "stdout": p.stdout}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--large-tokens", type=int, default=65536)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    tmp = tempfile.mkdtemp(prefix="unravel-bench-")
    corpus = os.path.join(tmp, "corpus.jsonl")
    write_corpus(corpus, docs=max(200, a.large_tokens // 150))
    env = dict(os.environ, OMP_NUM_THREADS="2")
    torch_runs, ours = [], []
    for r in range(a.rounds):
        p = subprocess.run([sys.executable, "-c", TORCH_CHILD, "configs/models/gpt2.json", str(a.tokens)],
                           cwd=ROOT, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(p.stderr)
        torch_runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        ours.append(run_unravel(corpus, os.path.join(tmp, "acts"), a.tokens))
        print(f"round {r}: pytorch forward {torch_runs[-1]['tokens_per_s']:.0f} tok/s, "
              f"unravel extract {ours[-1]['tokens_per_s']:.0f} tok/s", file=sys.stderr)
    large = run_unravel(corpus, os.path.join(tmp, "acts-large"), a.large_tokens)
    pt = sorted(x["tokens_per_s"] for x in torch_runs)[len(torch_runs) // 2]
    un = sorted(ours, key=lambda x: x["tokens_per_s"])[len(ours) // 2]
    print(f"\nGPT-2 small (random weights), 13 residual hooks, ctx 128, batch 8, f16 store, 2 threads, "
          f"{a.tokens} tokens, median of {a.rounds} rounds\n")
    print("| | tokens/s | ratio |")
    print("|---|---|---|")
    print(f"| PyTorch forward only (hidden states to f16) | {pt:.0f} | 1.00x |")
    print(f"| unravel extract, end to end | {un['tokens_per_s']:.0f} | {un['tokens_per_s'] / pt:.2f}x |")
    paired = sorted(u["tokens_per_s"] / t["tokens_per_s"] for t, u in zip(torch_runs, ours))[len(ours) // 2]
    print(f"\nmedian per-round ratio (each round runs both back to back): {paired:.2f}x; "
          f"per round: pytorch {[round(x['tokens_per_s']) for x in torch_runs]}, "
          f"unravel {[round(x['tokens_per_s']) for x in ours]}")
    print(f"\nunravel busy time as % of wall: forward {un['forward_pct']}%, tokenize+pack {un['pack_pct']}%, "
          f"write {un['write_pct']}% (separate threads, overlapping); write CPU time (writer thread + its "
          f"encoding jobs) {un['write_cpu_pct']}% of wall, per round {[x['write_cpu_pct'] for x in ours]}; "
          f"{un['bytes'] / a.tokens:.0f} bytes/token on disk")
    print(f"\npeak RSS: {un['peak_rss_mb']:.0f} MB at {a.tokens} tokens, "
          f"{large['peak_rss_mb']:.0f} MB at {a.large_tokens} tokens "
          f"({large['tokens_per_s']:.0f} tok/s)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
