#!/usr/bin/env python3
"""Forward-pass throughput: unravel vs Hugging Face transformers (PyTorch), side by side.

Runs both implementations on the same random-weight GPT-2-small and DistilBERT-base configs
(configs/models/*.json), batch 8 x 128 tokens, all 13 (GPT-2) / 7 (DistilBERT) residual-stream
hidden states, 2 threads, alternating rounds so both see the same machine state. Each
measurement runs in its own process (so peak RSS is per implementation).

    cargo build --release --example forward_bench
    python3 scripts/bench_forward.py [--rounds 5] [--iters 5] [--bin PATH]

Two figures per model, because this VM's speed drifts by up to 30% over minutes: the ratio of the
median tok/s over all rounds, and the median of the per-round ratios (each round runs PyTorch then
unravel back to back, so a slow drift cancels within the pair). Best-iteration times are printed
too: the least disturbed run each side managed.

Needs torch and transformers (pip install torch transformers); never run in CI.
Prints a Markdown table for BENCHMARKS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/examples/forward_bench")
MODELS = {
    "gpt2-small": ("configs/models/gpt2.json", "blocks.0.hook_resid_pre,blocks.*.hook_resid_post"),
    "distilbert-base": (
        "configs/models/distilbert-base-uncased.json",
        "blocks.0.hook_resid_pre,blocks.*.hook_resid_post",
    ),
}

TORCH_CHILD = r"""
import json, resource, statistics, sys, time
import torch
from transformers import AutoConfig, AutoModel
torch.set_num_threads(2)
cfg_path, batch, seq, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
config = AutoConfig.from_pretrained(cfg_path)
model = AutoModel.from_config(config).eval()  # GPT2Model / DistilBertModel: no LM head
ids = (torch.arange(batch * seq) * 7919 % config.vocab_size).reshape(batch, seq)
mask = torch.ones_like(ids)
with torch.inference_mode():
    model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({"impl": "pytorch", "median_s": med, "best_s": min(times),
                  "tokens_per_s": batch * seq / med, "hidden_states": len(out.hidden_states),
                  "attn": getattr(model.config, "_attn_implementation", "?"),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(cmd, env=None):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--bin", default=BIN, help="forward_bench binary (to compare builds)")
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit("build first: cargo build --release --example forward_bench")
    env = dict(os.environ, RAYON_NUM_THREADS="2", OMP_NUM_THREADS="2")
    import torch, transformers  # noqa: E401  (versions for the table)

    rows = []
    for name, (cfg, hooks) in MODELS.items():
        res = {"pytorch": [], "unravel": []}
        for r in range(a.rounds):
            res["pytorch"].append(run([sys.executable, "-c", TORCH_CHILD, cfg, str(a.batch), str(a.seq), str(a.iters)], env))
            res["unravel"].append(run([a.bin, cfg, str(a.batch), str(a.seq), hooks, str(a.iters)], env))
            print(f"{name} round {r}: pytorch {res['pytorch'][-1]['tokens_per_s']:.0f} tok/s, "
                  f"unravel {res['unravel'][-1]['tokens_per_s']:.0f} tok/s", file=sys.stderr)
        tp = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in res.items()}
        rss = {k: max(x["peak_rss_mb"] for x in v) for k, v in res.items()}
        rows.append((name, tp, rss, res))

    print(f"\ntorch {torch.__version__}, transformers {transformers.__version__}, "
          f"batch {a.batch} x {a.seq}, 2 threads, {a.rounds} rounds x {a.iters} iterations (median)\n")
    print("| model | PyTorch tok/s | unravel tok/s | ratio of medians | median per-round ratio "
          "| best-iteration ratio | PyTorch peak RSS | unravel peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tp, rss, res in rows:
        paired = statistics.median(u["tokens_per_s"] / p["tokens_per_s"]
                                   for p, u in zip(res["pytorch"], res["unravel"]))
        best = min(x["best_s"] for x in res["pytorch"]) / min(x["best_s"] for x in res["unravel"])
        print(f"| {name} | {tp['pytorch']:.0f} | {tp['unravel']:.0f} | {tp['unravel'] / tp['pytorch']:.2f}x "
              f"| {paired:.2f}x | {best:.2f}x | {rss['pytorch']:.0f} MB | {rss['unravel']:.0f} MB |")
    print("\nper round (tok/s):")
    for name, tp, rss, res in rows:
        print(f"  {name}: pytorch {[round(x['tokens_per_s']) for x in res['pytorch']]}, "
              f"unravel {[round(x['tokens_per_s']) for x in res['unravel']]}")


if __name__ == "__main__":
    main()
