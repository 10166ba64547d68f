#!/usr/bin/env python3
"""SAE training throughput and loss curves: unravel vs a PyTorch reference, side by side.

Both sides train the same "april-2024" standard SAE (ReLU, L1 weighted by decoder row norms, Adam,
grad-norm clipping, L1 warm-up, linear LR decay at the end) on the same data from the same init, f32,
on the CPU with the same number of threads. The data, init and config come from our Rust example:

    target/release/examples/sae_bench --work DIR --d-in 768 --d-sae 6144 --batch 4096 --steps S [--generate-only]

which writes DIR/data.safetensors (x [N,d_in]), DIR/init.safetensors (W_enc, b_enc, W_dec, b_dec, scale),
DIR/config.json and, unless --generate-only, trains and writes DIR/unravel.json
({"tokens_per_s", "seconds", "steps": [{"step", "mse", "l1", "loss", "l0"}, ...]}).

This script (a) builds the example (unless --no-build), (b) runs it with --generate-only, then for each of
--rounds rounds (c) trains the PyTorch reference in this process (torch.set_num_threads(--threads)) and
(d) runs the example (RAYON_NUM_THREADS=--threads), alternating which side goes first. It prints
tokens/s of both (medians over rounds) and the ratio unravel / PyTorch, compares the loss curves of the
first round step by step (max relative difference over all steps, at steps 0 and 1, and at the end; and
PyTorch's own round-to-round difference as the noise floor), saves DIR/loss_curves.png (loss and L0 vs
step, log y), prints a Markdown table for BENCHMARKS.md, and writes every figure to DIR/bench_sae.json.

PyTorch timing: one untimed warm-up step on a copy of the parameters (with its own optimiser) first, then
the whole loop of `steps` steps from the init is timed; tokens/s = steps * batch / seconds. The per-step
metrics are kept as tensors and converted with .item() only after the timed loop.

    cargo build --release --example sae_bench
    python3 scripts/bench_sae.py --no-build --steps 100 --rounds 2
    python3 scripts/bench_sae.py --fake-ours --d-in 64 --d-sae 512 --batch 256 --steps 50   # no Rust needed

--fake-ours replaces the Rust example by this script itself (`bench_sae.py --fake-example ...`, same
command line as the example): it writes random data/init/config with numpy, and trains with a plain
numpy f32 implementation of the same step (hand-written backward, clipping and Adam), writing the
same unravel.json. It exercises the whole flow without Rust, and checks the PyTorch reference against
an independent implementation.

Needs torch, numpy, safetensors, matplotlib (scripts/requirements.txt); never run in CI.
"""

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import load_file, save_file

CONFIG_KEYS = ("d_in", "d_sae", "batch", "steps", "lr", "l1_coefficient", "l1_warmup_steps", "lr_decay_steps",
               "clip_norm", "beta1", "beta2", "eps")
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
METRICS = ("mse", "l1", "loss", "l0")


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------------
# The step recipe, shared by both Python implementations
# ---------------------------------------------------------------------------------------------------

def l1_weight(cfg, t):
    """L1 coefficient at step t (0-based): linear warm-up over l1_warmup_steps, reaching it at step warmup-1."""
    return cfg["l1_coefficient"] * min(1.0, (t + 1) / max(1, cfg["l1_warmup_steps"]))


def lr_at(cfg, t):
    """Learning rate at step t: constant, then linear decay over the last lr_decay_steps steps (never 0)."""
    if cfg["lr_decay_steps"] > 0:
        return cfg["lr"] * min(1.0, (cfg["steps"] - t) / cfg["lr_decay_steps"])
    return cfg["lr"]


def batch_rows(t, batch, n_rows):
    """Rows of batch t: [t*B, (t+1)*B) modulo N (N is a multiple of B)."""
    start = (t * batch) % n_rows
    return slice(start, start + batch)


# ---------------------------------------------------------------------------------------------------
# PyTorch reference
# ---------------------------------------------------------------------------------------------------

def torch_train(data, init, cfg, threads):
    """Train from `init` for cfg["steps"] steps. Returns the timing and the per-step metrics."""
    import torch

    torch.set_num_threads(threads)
    x_all = torch.from_numpy(data)
    scale = float(init["scale"].reshape(-1)[0])
    batch, steps, n_rows = cfg["batch"], cfg["steps"], data.shape[0]

    def make():
        params = [torch.nn.Parameter(torch.from_numpy(init[k].copy())) for k in PARAMS]
        opt = torch.optim.Adam(params, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                               weight_decay=0)
        return params, opt

    def step(params, opt, t):
        w_enc, b_enc, w_dec, b_dec = params
        x = x_all[batch_rows(t, batch, n_rows)] * scale
        pre = x @ w_enc + b_enc
        f = torch.relu(pre)
        x_hat = f @ w_dec + b_dec
        mse = ((x_hat - x) ** 2).sum(-1).mean()
        l1 = (f * w_dec.norm(dim=1)).sum(-1).mean()
        loss = mse + l1_weight(cfg, t) * l1
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["clip_norm"])
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, t)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            l0 = (f > 0).float().sum(-1).mean()
        return mse.detach(), l1.detach(), loss.detach(), l0

    warm_params, warm_opt = make()  # untimed warm-up on a copy: allocator, thread pool, first-call costs
    step(warm_params, warm_opt, 0)
    del warm_params, warm_opt

    params, opt = make()
    recorded, step_seconds = [], []
    t0 = time.perf_counter()
    for t in range(steps):
        ts = time.perf_counter()
        recorded.append(step(params, opt, t))
        step_seconds.append(time.perf_counter() - ts)
    seconds = time.perf_counter() - t0
    curve = [{"step": t, **{k: v.item() for k, v in zip(METRICS, vals)}} for t, vals in enumerate(recorded)]
    return {"seconds": seconds, "tokens_per_s": steps * batch / seconds, "step_seconds": step_seconds,
            "steps": curve}


# ---------------------------------------------------------------------------------------------------
# --fake-example: a stand-in for examples/sae_bench (numpy data/init/config + a numpy trainer)
# ---------------------------------------------------------------------------------------------------

def fake_generate(work, d_in, d_sae, batch, steps, seed=0):
    """Write data/init/config like the Rust example would: sparse sums of random directions plus an offset."""
    rng = np.random.default_rng(seed)
    n_rows = batch * 4
    n_true, k = max(1, d_sae // 2), 16
    dirs = rng.standard_normal((n_true, d_in)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    offset = rng.standard_normal(d_in).astype(np.float32)
    x = np.empty((n_rows, d_in), np.float32)
    for s in range(0, n_rows, 1024):
        e = min(n_rows, s + 1024)
        idx = rng.integers(0, n_true, (e - s, k))
        mag = rng.exponential(1.0, (e - s, k, 1)).astype(np.float32)
        x[s:e] = (mag * dirs[idx]).sum(1) + offset + 0.05 * rng.standard_normal((e - s, d_in)).astype(np.float32)
    w_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    w_dec *= 0.1 / np.linalg.norm(w_dec, axis=1, keepdims=True)
    init = {"W_enc": np.ascontiguousarray(w_dec.T), "b_enc": np.zeros(d_sae, np.float32), "W_dec": w_dec,
            "b_dec": np.zeros(d_in, np.float32),
            "scale": np.array([np.sqrt(d_in) / np.linalg.norm(x, axis=1).mean()], np.float32)}
    cfg = {"d_in": d_in, "d_sae": d_sae, "batch": batch, "steps": steps, "lr": 5e-4, "l1_coefficient": 5.0,
           "l1_warmup_steps": max(1, steps // 4), "lr_decay_steps": max(1, steps // 5), "clip_norm": 1.0,
           "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    os.makedirs(work, exist_ok=True)
    save_file({"x": x}, os.path.join(work, "data.safetensors"))
    save_file(init, os.path.join(work, "init.safetensors"))
    with open(os.path.join(work, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)


def numpy_train(data, init, cfg):
    """The same step as torch_train, in numpy f32 with a hand-written backward (the spec the Rust side follows)."""
    p = {k: init[k].astype(np.float32).copy() for k in PARAMS}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    scale = np.float32(init["scale"].reshape(-1)[0])
    batch, steps, n_rows = cfg["batch"], cfg["steps"], data.shape[0]
    b1, b2, eps = cfg["beta1"], cfg["beta2"], cfg["eps"]
    curve = []
    t0 = time.perf_counter()
    for t in range(steps):
        x = data[batch_rows(t, batch, n_rows)] * scale
        pre = x @ p["W_enc"] + p["b_enc"]
        f = np.maximum(pre, 0)
        x_hat = f @ p["W_dec"] + p["b_dec"]
        norms = np.linalg.norm(p["W_dec"], axis=1)                      # [d_sae]
        diff = x_hat - x
        mse = (diff * diff).sum(-1).mean()
        l1 = (f * norms).sum(-1).mean()
        lam = l1_weight(cfg, t)
        loss = mse + lam * l1
        # backward (mean over the batch)
        d_xhat = diff * np.float32(2.0 / batch)                          # d loss / d x_hat
        g = {"b_dec": d_xhat.sum(0)}
        f_mean = f.mean(0)                                               # d l1 / d norms
        g["W_dec"] = f.T @ d_xhat + (np.float32(lam) * f_mean / np.maximum(norms, 1e-30))[:, None] * p["W_dec"]
        d_pre = (d_xhat @ p["W_dec"].T + np.float32(lam / batch) * norms) * (pre > 0)   # relu'(0) = 0
        g["W_enc"] = x.T @ d_pre
        g["b_enc"] = d_pre.sum(0)
        # clip_grad_norm_: coef = clip / (total + 1e-6), applied only when < 1
        total = np.sqrt(sum(float((gk.astype(np.float64) ** 2).sum()) for gk in g.values()))
        coef = cfg["clip_norm"] / (total + 1e-6)
        if coef < 1.0:
            for k in g:
                g[k] *= np.float32(coef)
        # Adam (torch's form: denom = sqrt(v) / sqrt(1 - b2^t) + eps; p -= lr / (1 - b1^t) * m / denom)
        n = t + 1
        step_size = np.float32(lr_at(cfg, t) / (1 - b1 ** n))
        bc2_sqrt = np.float32(np.sqrt(1 - b2 ** n))
        for k in PARAMS:
            m[k] = np.float32(b1) * m[k] + np.float32(1 - b1) * g[k]
            v[k] = np.float32(b2) * v[k] + np.float32(1 - b2) * g[k] * g[k]
            p[k] -= step_size * m[k] / (np.sqrt(v[k]) / bc2_sqrt + np.float32(eps))
        curve.append({"step": t, "mse": float(mse), "l1": float(l1), "loss": float(loss),
                      "l0": float((f > 0).sum(-1).mean())})
    seconds = time.perf_counter() - t0
    return {"tokens_per_s": steps * batch / seconds, "seconds": seconds, "steps": curve,
            "implementation": "numpy f32 (bench_sae.py --fake-example)"}


def fake_example(args):
    """Behave like `sae_bench --work DIR ... [--generate-only]`: (re)generate, then train unless told not to."""
    fake_generate(args.work, args.d_in, args.d_sae, args.batch, args.steps)
    if args.generate_only:
        return 0
    data = load_file(os.path.join(args.work, "data.safetensors"))["x"]
    init = load_file(os.path.join(args.work, "init.safetensors"))
    with open(os.path.join(args.work, "config.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(args.work, "unravel.json"), "w") as fh:
        json.dump(numpy_train(data, init, cfg), fh)
    return 0


# ---------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------

def vm_hwm_mb(pid):
    """Peak resident set (VmHWM) of a running process, in MB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_ours(cmd, env, log_path):
    """Run a command with its output in log_path; returns (seconds, peak RSS MB of that child).

    The peak is VmHWM polled every 20 ms (ru_maxrss of a child is useless here: Linux carries the
    parent's high-water mark across fork/exec), so growth in the last 20 ms can be missed.
    """
    t0 = time.perf_counter()
    peak = 0.0
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=repo_root(), env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, vm_hwm_mb(proc.pid) or 0.0)
            time.sleep(0.02)
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}); output in {log_path}:\n{tail}")
    return time.perf_counter() - t0, peak


def file_digest(paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def read_unravel_json(path, steps):
    with open(path) as fh:
        res = json.load(fh)
    for key in ("tokens_per_s", "seconds", "steps"):
        if key not in res:
            sys.exit(f"{path} has no {key!r}")
    got = [s.get("step") for s in res["steps"]]
    if got != list(range(steps)):
        sys.exit(f"{path}: expected steps 0..{steps - 1} in order, got {len(got)} entries "
                 f"({got[:3]}...{got[-3:]})")
    for s in res["steps"]:
        missing = [k for k in METRICS if k not in s]
        if missing:
            sys.exit(f"{path}: step {s['step']} lacks {missing}")
    return res


def rel_diffs(a, b, key):
    """|a - b| / |b| per step (b is the PyTorch reference)."""
    return [abs(x[key] - y[key]) / max(abs(y[key]), 1e-12) for x, y in zip(a, b)]


def compare_curves(ours, ref):
    out = {}
    for key in METRICS:
        d = rel_diffs(ours, ref, key)
        worst = int(np.argmax(d))
        out[key] = {"max_rel_diff": d[worst], "max_rel_diff_step": worst, "step0_rel_diff": d[0],
                    "step1_rel_diff": d[1] if len(d) > 1 else None, "final_rel_diff": d[-1]}
    return out


def plot_curves(path, torch_curve, ours_curve, ours_label):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "loss", "loss = mse + λ·l1"), (axes[1], "l0", "L0 (active features / token)")):
        ax.plot([s["step"] for s in torch_curve], [s[key] for s in torch_curve], "-", lw=2, label="PyTorch")
        ax.plot([s["step"] for s in ours_curve], [s[key] for s in ours_curve], "--", lw=1.5, label=ours_label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--work", default=os.path.join(repo_root(), "out", "sae_bench"),
                    help="working folder for data, init, config and results")
    ap.add_argument("--d-in", type=int, default=768, help="SAE input width (activation size)")
    ap.add_argument("--d-sae", type=int, default=6144, help="number of SAE features")
    ap.add_argument("--batch", type=int, default=4096, help="tokens per step")
    ap.add_argument("--steps", type=int, default=30, help="training steps per run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of both sides; medians reported")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and RAYON_NUM_THREADS")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build (use the existing binary)")
    ap.add_argument("--bin", default=None,
                    help="our example binary instead of target/release/examples/sae_bench (e.g. another build); "
                         "such a path is never built")
    ap.add_argument("--example-args", default="",
                    help="extra flags for our example, e.g. '--pretrain-steps 800 --lr 1e-3' (a warm start: "
                         "both sides continue from the same pretrained weights, measuring steady-state training)")
    ap.add_argument("--fake-ours", action="store_true",
                    help="use this script's numpy stand-in instead of the Rust example (implies --no-build)")
    ap.add_argument("--max-loss-rel-diff", type=float, default=None,
                    help="exit 1 if the loss curves differ by more than this (relative, any step)")
    ap.add_argument("--fake-example", action="store_true",
                    help="internal: act as examples/sae_bench (used by --fake-ours); honours --generate-only")
    ap.add_argument("--generate-only", action="store_true", help="with --fake-example: only write data/init/config")
    args = ap.parse_args(argv)
    if args.batch <= 0 or args.steps <= 0 or args.rounds <= 0 or args.threads <= 0:
        ap.error("--batch, --steps, --rounds and --threads must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    args.work = os.path.abspath(args.work)
    if args.fake_example:
        return fake_example(args)

    root = repo_root()
    os.makedirs(args.work, exist_ok=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.fake_ours:
        ours_cmd, ours_label = [sys.executable, os.path.abspath(__file__), "--fake-example"], "numpy stand-in (--fake-ours)"
    else:
        default_bin = os.path.join(root, "target/release/examples/sae_bench")
        ours_cmd, ours_label = [os.path.abspath(args.bin or default_bin)], "unravel"
        if not args.no_build and ours_cmd[0] == default_bin:
            print("building: cargo build --release --example sae_bench", file=sys.stderr)
            subprocess.run(["cargo", "build", "--release", "--example", "sae_bench"], cwd=root, check=True)
        if not os.path.exists(ours_cmd[0]):
            sys.exit(f"{ours_cmd[0]} not found: build it (cargo build --release --example sae_bench) or use --fake-ours")
    ours_cmd += ["--work", args.work, "--d-in", str(args.d_in), "--d-sae", str(args.d_sae),
                 "--batch", str(args.batch), "--steps", str(args.steps)]
    if args.example_args and not args.fake_ours:
        import shlex
        ours_cmd += shlex.split(args.example_args)

    def path(name):
        return os.path.join(args.work, name)

    print(f"generating: {' '.join(ours_cmd)} --generate-only", file=sys.stderr)
    run_ours(ours_cmd + ["--generate-only"], env, path("generate.log"))
    with open(path("config.json")) as fh:
        cfg = json.load(fh)
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        sys.exit(f"config.json lacks {missing}")
    for key in ("d_in", "d_sae", "batch", "steps"):
        if cfg[key] != getattr(args, key):
            print(f"warning: config.json {key} = {cfg[key]}, command line said {getattr(args, key)}; "
                  "using config.json", file=sys.stderr)
    data = load_file(path("data.safetensors"))["x"]
    init = load_file(path("init.safetensors"))
    n_rows = data.shape[0]
    if data.dtype != np.float32 or data.shape[1] != cfg["d_in"] or n_rows % cfg["batch"]:
        sys.exit(f"data x is {data.dtype} {data.shape}; expected f32 [N, {cfg['d_in']}] with N a multiple of "
                 f"{cfg['batch']}")
    want = {"W_enc": (cfg["d_in"], cfg["d_sae"]), "b_enc": (cfg["d_sae"],), "W_dec": (cfg["d_sae"], cfg["d_in"]),
            "b_dec": (cfg["d_in"],), "scale": (1,)}
    for k, shape in want.items():
        if k not in init or init[k].shape != shape or init[k].dtype != np.float32:
            sys.exit(f"init.safetensors {k}: expected f32 {shape}, got "
                     f"{(init[k].dtype, init[k].shape) if k in init else 'nothing'}")
    inputs = [path("data.safetensors"), path("init.safetensors")]
    digest = file_digest(inputs)
    steps, batch = cfg["steps"], cfg["batch"]
    print(f"data: N = {n_rows} rows ({n_rows // batch} batches, {'wraps' if steps * batch > n_rows else 'no wrap'}), "
          f"scale {float(init['scale'][0]):.5g}; {steps} steps of {batch} tokens", file=sys.stderr)

    import torch
    torch.set_num_threads(args.threads)
    runs = {"pytorch": [], "unravel": []}
    for r in range(args.rounds):
        order = ("pytorch", "unravel") if r % 2 == 0 else ("unravel", "pytorch")
        for side in order:
            if side == "pytorch":
                res = torch_train(data, init, cfg, args.threads)
                res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            else:
                if os.path.exists(path("unravel.json")):
                    os.remove(path("unravel.json"))
                wall, rss = run_ours(ours_cmd, env, path(f"unravel_round{r}.log"))
                res = read_unravel_json(path("unravel.json"), steps)
                res["wall_seconds"] = wall
                res["peak_rss_mb"] = res.get("peak_rss_mb", rss)  # the example's own figure if it reports one
                if file_digest(inputs) != digest:
                    sys.exit("the example rewrote data.safetensors/init.safetensors with different contents: "
                             "the two sides would not train on the same thing (make generation deterministic)")
            runs[side].append(res)
            print(f"round {r}: {side:7s} {res['tokens_per_s']:9.0f} tok/s ({res['seconds']:.2f} s), "
                  f"final loss {res['steps'][-1]['loss']:.6g}", file=sys.stderr)

    med = {side: statistics.median(x["tokens_per_s"] for x in v) for side, v in runs.items()}
    ratio = med["unravel"] / med["pytorch"]
    ref, ours = runs["pytorch"][0]["steps"], runs["unravel"][0]["steps"]
    cmp = compare_curves(ours, ref)
    noise = {"pytorch": None, "unravel": None}
    if args.rounds > 1:
        for side in noise:
            noise[side] = max(rel_diffs(runs[side][1]["steps"], runs[side][0]["steps"], "loss"))
    steady = [(steps - 1) * batch / sum(x["step_seconds"][1:]) for x in runs["pytorch"] if steps > 1]

    plot_path = path("loss_curves.png")
    plot_curves(plot_path, ref, ours, ours_label)

    import safetensors
    versions = {"torch": torch.__version__, "numpy": np.__version__, "safetensors": safetensors.__version__,
                "python": sys.version.split()[0]}
    summary = {
        "config": cfg, "n_rows": n_rows, "threads": args.threads, "rounds": args.rounds,
        "fake_ours": args.fake_ours, "ours_label": ours_label, "versions": versions,
        "timing_note": "PyTorch: 1 untimed warm-up step on a copy, then all steps timed; "
                       "tokens_per_s = steps * batch / seconds",
        "pytorch": {"median_tokens_per_s": med["pytorch"], "steady_tokens_per_s_excl_step0": steady,
                    "rounds": [{k: x[k] for k in ("tokens_per_s", "seconds", "peak_rss_mb")} for x in runs["pytorch"]]},
        "unravel": {"median_tokens_per_s": med["unravel"],
                    "rounds": [{k: x[k] for k in ("tokens_per_s", "seconds", "wall_seconds", "peak_rss_mb")}
                               for x in runs["unravel"]]},
        "ratio_unravel_over_pytorch": ratio,
        "curve_comparison_round0": cmp,
        "round_to_round_loss_max_rel_diff": noise,
        "curves_round0": {"pytorch": ref, "unravel": ours},
        "plot": plot_path,
    }
    with open(path("bench_sae.json"), "w") as fh:
        json.dump(summary, fh, indent=1)

    # ---- report ----
    loss = cmp["loss"]
    print(f"\nPyTorch {med['pytorch']:.0f} tok/s, {ours_label} {med['unravel']:.0f} tok/s: "
          f"ratio {ratio:.2f}x (medians of {args.rounds} rounds)")
    print(f"loss curves ({steps} steps, round 0): max rel diff {loss['max_rel_diff']:.2e} at step "
          f"{loss['max_rel_diff_step']}; step 0 {loss['step0_rel_diff']:.2e}, step 1 "
          f"{loss['step1_rel_diff'] if loss['step1_rel_diff'] is None else format(loss['step1_rel_diff'], '.2e')}, "
          f"last step {loss['final_rel_diff']:.2e}")
    for key in ("mse", "l1", "l0"):
        c = cmp[key]
        print(f"  {key:4s}: max rel diff {c['max_rel_diff']:.2e} (step {c['max_rel_diff_step']}), "
              f"last step {c['final_rel_diff']:.2e}")
    if args.rounds > 1:
        print(f"round-to-round loss max rel diff (noise floor): PyTorch {noise['pytorch']:.2e}, "
              f"{ours_label} {noise['unravel']:.2e}")
    print(f"plot: {plot_path}\nall figures: {path('bench_sae.json')}\n")

    lr_note = (f"lr {cfg['lr']:g} (decay over last {cfg['lr_decay_steps']}), l1 {cfg['l1_coefficient']:g} "
               f"(warm-up {cfg['l1_warmup_steps']}), clip {cfg['clip_norm']:g}, Adam ({cfg['beta1']:g}, "
               f"{cfg['beta2']:g}, {cfg['eps']:g})")
    print(f"torch {torch.__version__}, d_in {cfg['d_in']}, d_sae {cfg['d_sae']}, batch {batch}, {steps} steps, "
          f"{lr_note}, f32, {args.threads} threads, {args.rounds} rounds (median):\n")
    print("| implementation | tokens/s | ms/step | final loss | final mse | final L0 | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for side, label in (("pytorch", "PyTorch (torch.optim.Adam)"), ("unravel", ours_label)):
        last = runs[side][0]["steps"][-1]
        print(f"| {label} | {med[side]:.0f} | {1000 * batch / med[side]:.0f} | {last['loss']:.5g} | "
              f"{last['mse']:.5g} | {last['l0']:.1f} | {max(x['peak_rss_mb'] for x in runs[side]):.0f} MB |")
    print(f"\nRatio {ratio:.2f}x. Loss curves agree to {loss['max_rel_diff']:.1e} (max relative difference over "
          f"{steps} steps; {loss['final_rel_diff']:.1e} at the last step; L0 {cmp['l0']['max_rel_diff']:.1e}). "
          f"Per round (tok/s): PyTorch {[round(x['tokens_per_s']) for x in runs['pytorch']]}, "
          f"{ours_label} {[round(x['tokens_per_s']) for x in runs['unravel']]}. PyTorch peak RSS is the whole "
          f"Python process (data included).")

    if args.max_loss_rel_diff is not None and loss["max_rel_diff"] > args.max_loss_rel_diff:
        print(f"FAIL: loss curves differ by {loss['max_rel_diff']:.2e} > {args.max_loss_rel_diff:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
