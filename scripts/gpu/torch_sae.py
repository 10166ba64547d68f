#!/usr/bin/env python3
"""The PyTorch side of the SAE benchmark (run_all.sh stages sae and profile).

The step is scripts/bench_sae.py's `torch_train` step (april-2024: ReLU SAE, L1 weighted by decoder
row norms, Adam, global grad-norm clip, L1 warm-up, linear LR decay; its schedule functions are
imported from there), on a device, with three precisions:
  f32    f32 everywhere, TF32 off (PyTorch's default for matmuls)
  tf32   f32 parameters, matmuls in TF32 (torch.backends.cuda.matmul.allow_tf32 = True)
  bf16   f32 parameters and Adam, forward + loss under torch.autocast(bfloat16) (the usual mixed precision)

Both sides start from the same weights and train with the same hyper-parameters on the same rows:

    torch_sae.py init  --acts A --hook H --d-sae S --out INIT     # a SAELens folder; ours: train --from INIT
    (unravel train --acts A --hook H --from INIT ... --out RUN)
    torch_sae.py train --acts A --hook H --run RUN --init INIT --mode f32 --data gpu --json J
    torch_sae.py profile --d-in 768 --d-sae 24576 --batch 4096 --json J   # GEMM peak, CUDA events, profiler

`train` reads our run's resolved config.toml (lr, λ, schedule fractions, clip, Adam), its run.json
(scaling factor, training shards) and unfolds INIT with that scaling factor exactly as `unravel train
--from` does, so step 0 is the same SAE on both sides. The row order differs (our loader's shuffle vs a
torch permutation), so loss curves are compared per log window, as curves, not bit for bit.
"""

import argparse
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # scripts/: bench_sae.py's schedule
import common  # noqa: E402
from bench_sae import l1_weight, lr_at  # noqa: E402

METRICS = ("mse", "l1", "loss", "l0")


def rust_round(x):
    """Rust's f64::round (half away from zero), which our schedule uses; Python's round() is banker's."""
    return math.floor(x + 0.5)


def shard_files(acts, indices=None):
    m = common.load_json(os.path.join(acts, "__unravel__", "manifest.json"))
    shards = m["shards"]
    if indices is not None:
        shards = [shards[i] for i in indices]
    return [os.path.join(acts, s["file"]) for s in shards]


def load_rows(files, hook, max_rows, include_special=False):
    """The hook column of the shards, as one f16 numpy array [N, d] (at most max_rows rows). Like our
    loader (include_special = false), BOS / separator rows are left out unless include_special."""
    import numpy as np
    import pyarrow.parquet as pq

    parts, n = [], 0
    for f in files:
        has_special = "special" in pq.read_schema(f).names
        t = pq.read_table(f, columns=[hook] + (["special"] if has_special else []))
        col = t.column(hook).combine_chunks()
        d = col.type.list_size
        flat = col.values.to_numpy(zero_copy_only=False)
        arr = flat.reshape(-1, d).astype(np.float16, copy=False)
        if has_special and not include_special:
            arr = arr[~t.column("special").to_numpy(zero_copy_only=False).astype(bool)]
        parts.append(arr)
        n += len(arr)
        if n >= max_rows:
            break
    return np.concatenate(parts)[:max_rows]


# ------------------------------------------------------------------------------------------------
# init: one SAELens-layout starting point for both sides
# ------------------------------------------------------------------------------------------------

def cmd_init(a):
    import json
    import numpy as np
    from safetensors.numpy import save_file

    x = load_rows(shard_files(a.acts)[:1], a.hook, 65536).astype(np.float32)
    d = x.shape[1]
    # Our trainer multiplies inputs by s = sqrt(d) / E|x| and unfolds --from weights with it; the
    # raw-space init here is made with an estimate of s so that, unfolded, W_dec's rows have norm
    # ~dec_init_norm (the april-2024 init: W_enc = W_dec^T, zero biases).
    s_est = math.sqrt(d) / float(np.linalg.norm(x, axis=1).mean())
    rng = np.random.default_rng(a.seed)
    w_dec = rng.standard_normal((a.d_sae, d)).astype(np.float32)
    w_dec *= a.dec_init_norm / np.linalg.norm(w_dec, axis=1, keepdims=True)
    raw = {"W_enc": np.ascontiguousarray(w_dec.T * s_est), "b_enc": np.zeros(a.d_sae, np.float32),
           "W_dec": w_dec / s_est, "b_dec": np.zeros(d, np.float32)}
    os.makedirs(a.out, exist_ok=True)
    save_file(raw, os.path.join(a.out, "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": d, "d_sae": a.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"hook_name": a.hook, "model_name": "scripts/gpu/torch_sae.py init",
                        "context_size": 128, "prepend_bos": True, "hook_head_index": None,
                        "dataset_path": a.acts, "sae_lens_version": "6.0.0"}}
    with open(os.path.join(a.out, "cfg.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    print(json.dumps({"d_in": d, "d_sae": a.d_sae, "scale_estimate": s_est}))
    return 0


# ------------------------------------------------------------------------------------------------
# train: the reference step on the device
# ------------------------------------------------------------------------------------------------

def schedule_cfg(tc, steps):
    """bench_sae.py's cfg dict from our resolved config.toml."""
    return {"steps": steps, "lr": tc["lr"], "l1_coefficient": tc["l1_coefficient"],
            "l1_warmup_steps": max(1, rust_round(tc.get("l1_warmup_frac", 0.05) * steps)),
            "lr_decay_steps": rust_round(tc.get("lr_decay_frac", 0.2) * steps),
            "clip_norm": tc.get("clip_norm", 1.0), "beta1": tc.get("beta1", 0.9), "beta2": tc.get("beta2", 0.999),
            "eps": tc.get("adam_eps", 1e-8)}


def make_params(init_path, scale, device):
    import torch
    from safetensors.torch import load_file

    raw = load_file(init_path)
    # unfold_scaling (src/sae/model.rs): W_enc / s, W_dec * s, b_dec * s; b_enc unchanged.
    t = {"W_enc": raw["W_enc"] / scale, "b_enc": raw["b_enc"], "W_dec": raw["W_dec"] * scale,
         "b_dec": raw["b_dec"] * scale}
    return [torch.nn.Parameter(t[k].float().to(device).contiguous()) for k in ("W_enc", "b_enc", "W_dec", "b_dec")]


def sae_step(params, x, lam, autocast_dtype):
    """Forward + loss (bench_sae.py torch_train's step); returns (loss, mse, l1, l0) before backward."""
    import torch

    w_enc, b_enc, w_dec, b_dec = params
    ctx = torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype else _null()
    with ctx:
        pre = x @ w_enc + b_enc
        f = torch.relu(pre)
        x_hat = f @ w_dec + b_dec
        mse = ((x_hat.float() - x) ** 2).sum(-1).mean()
        l1 = (f.float() * w_dec.norm(dim=1)).sum(-1).mean()
        loss = mse + lam * l1
    l0 = (f > 0).float().sum(-1).mean()
    return loss, mse, l1, l0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def cmd_train(a):
    import numpy as np
    import torch

    device = torch.device(a.device)
    if a.mode == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    autocast = torch.bfloat16 if a.mode == "bf16" else None
    run = common.load_json(os.path.join(a.run, "run.json"))
    tc = common.parse_toml_flat(os.path.join(a.run, "config.toml"))
    scale, batch = float(run["scaling_factor"]), int(tc["batch"])
    steps = a.steps or int(tc["tokens"]) // batch
    cfg = schedule_cfg(tc, steps)
    res = {"mode": a.mode, "data": a.data, "device": a.device, **common.torch_info(), "config": cfg,
           "batch": batch, "scaling_factor": scale, "fused_adam": a.fused and device.type == "cuda"}

    t0 = time.perf_counter()
    rows = load_rows(shard_files(a.acts, run["train_shards"]), a.hook, a.max_rows,
                     bool(tc.get("include_special", False)))
    res["load_s"], res["rows"], res["d_in"] = time.perf_counter() - t0, int(len(rows)), int(rows.shape[1])
    data = torch.from_numpy(rows)
    data = data.to(device) if a.data == "gpu" else (data.pin_memory() if device.type == "cuda" else data)
    res["data_bytes_on_device"] = rows.nbytes if a.data == "gpu" else 0
    gen = torch.Generator(device=data.device).manual_seed(a.seed)
    n = len(rows)

    def make():
        params = make_params(os.path.join(a.init, "sae_weights.safetensors"), scale, device)
        kw = {"fused": True} if res["fused_adam"] else {}
        opt = torch.optim.Adam(params, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"], **kw)
        return params, opt

    perm, pos = None, n

    def next_batch():
        nonlocal perm, pos
        if pos + batch > n:  # a new epoch: a fresh permutation
            perm, pos = torch.randperm(n, generator=gen, device=data.device), 0
        idx = perm[pos:pos + batch]
        pos += batch
        x = data[idx]
        return x.to(device, non_blocking=True).float() * scale

    def step(params, opt, t):
        x = next_batch()
        loss, mse, l1, l0 = sae_step(params, x, l1_weight(cfg, t), autocast)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["clip_norm"])
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, t)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return torch.stack([mse.detach(), l1.detach(), loss.detach(), l0])

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    wp, wo = make()  # untimed warm-up on a copy: cuBLAS handles, allocator, kernels
    step(wp, wo, 0)
    del wp, wo
    perm, pos = None, n
    params, opt = make()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    k0 = min(10, steps // 5)
    recorded = []
    t0 = time.perf_counter()
    t_k0 = t0
    for t in range(steps):
        if t == k0:
            sync()
            t_k0 = time.perf_counter()
        recorded.append(step(params, opt, t))
    sync()
    seconds = time.perf_counter() - t0
    res.update(steps=steps, seconds=seconds, steps_per_s=steps / seconds, tokens_per_s=steps * batch / seconds,
               steady_tokens_per_s=(steps - k0) * batch / max(time.perf_counter() - t_k0, 1e-9) if steps > k0 else None)
    if device.type == "cuda":
        res["torch_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        res["torch_max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        res["torch_max_allocated_excl_data_mib"] = res["torch_max_allocated_mib"] - res["data_bytes_on_device"] / 2**20
    curve = torch.stack(recorded).cpu().numpy().astype(np.float64)  # [steps, 4]
    res["curve_comparison"] = compare_with_ours(curve, a.run, int(tc.get("log_every", 10)))
    res["final"] = dict(zip(METRICS, curve[-1].tolist()))
    common.write_json(a.json, res) if a.json else print(res)
    return 0


def compare_with_ours(curve, run_dir, log_every):
    """Our metrics.jsonl windows vs the same windows of this curve: relative differences per metric."""
    import numpy as np

    ours = common.read_metrics(run_dir)
    out = {"windows": 0}
    if not ours:
        out["error"] = "no train lines in our metrics.jsonl"
        return out
    diffs = {k: [] for k in METRICS}
    pairs = []
    for m in ours:
        s = int(m["step"])
        if s > len(curve) or s < 1:
            continue
        w = curve[max(0, s - log_every):s].mean(0)
        ref = dict(zip(METRICS, w))
        pairs.append({"step": s, **{f"ours_{k}": m[k] for k in METRICS}, **{f"torch_{k}": ref[k] for k in METRICS}})
        for k in METRICS:
            diffs[k].append(abs(m[k] - ref[k]) / max(abs(ref[k]), 1e-12))
    out["windows"] = len(pairs)
    tail = max(1, len(pairs) // 5)
    for k in METRICS:
        d = np.array(diffs[k])
        if len(d):
            out[k] = {"max_rel_diff": float(d.max()), "final_rel_diff": float(d[-1]),
                      "mean_rel_diff_last_20pct": float(d[-tail:].mean())}
    # A few points of both curves (first, quartiles, last) for the report; the full curves stay in logs.
    idx = sorted({0, len(pairs) // 4, len(pairs) // 2, 3 * len(pairs) // 4, len(pairs) - 1}) if pairs else []
    out["points"] = [pairs[i] for i in idx]
    return out


# ------------------------------------------------------------------------------------------------
# profile: where the time of one step goes, and the chip's matmul peak
# ------------------------------------------------------------------------------------------------

def timed(fn, reps, device):
    """Mean seconds of fn() over reps, by CUDA events on a GPU (wall clock elsewhere), after a warm-up."""
    import torch

    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) / 1000 / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def cmd_profile(a):
    import torch

    device = torch.device(a.device)
    res = {"device": a.device, **common.torch_info(), "d_in": a.d_in, "d_sae": a.d_sae, "batch": a.batch}
    B, D, S = a.batch, a.d_in, a.d_sae
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32

    # 1. GEMM throughput: the encoder GEMM [B,D]x[D,S] and a large square one (the chip's practical peak).
    gemm = {}
    for name, dtype, tf32 in (("f32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for shape_name, (m, k, n) in (("encoder", (B, D, S)), ("square", (a.square,) * 3)):
            x = torch.randn(m, k, device=device, dtype=dtype)
            w = torch.randn(k, n, device=device, dtype=dtype)
            sec = timed(lambda: x @ w, a.reps, device)
            gemm[f"{name}/{shape_name}"] = {"shape": [m, k, n], "ms": sec * 1e3, "tflops": 2 * m * k * n / sec / 1e12}
            del x, w
    torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    res["gemm"] = gemm

    # 2. One training step in phases (CUDA events), f32 and bf16 autocast, on random data.
    phases = {}
    for mode in ("f32", "bf16"):
        autocast = torch.bfloat16 if mode == "bf16" else None
        g = torch.Generator(device=device).manual_seed(0)
        w_dec = torch.randn(S, D, device=device, generator=g)
        w_dec = w_dec * (0.1 / w_dec.norm(dim=1, keepdim=True))
        params = [torch.nn.Parameter(t.contiguous()) for t in
                  (w_dec.T.clone(), torch.zeros(S, device=device), w_dec, torch.zeros(D, device=device))]
        kw = {"fused": True} if device.type == "cuda" else {}
        opt = torch.optim.Adam(params, lr=1e-4, **kw)
        x = torch.randn(B, D, device=device, generator=g)

        def fwd():
            return sae_step(params, x, 5.0, autocast)[0]

        def fwd_bwd():
            fwd().backward()

        def full():
            fwd().backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        p = {"forward+loss_ms": timed(fwd, a.reps, device) * 1e3,
             "forward+backward_ms": timed(lambda: (fwd_bwd(), opt.zero_grad(set_to_none=True)), a.reps, device) * 1e3,
             "full_step_ms": timed(full, a.reps, device) * 1e3}
        p["backward_ms"] = p["forward+backward_ms"] - p["forward+loss_ms"]
        p["clip+adam_ms"] = p["full_step_ms"] - p["forward+backward_ms"]
        p["tokens_per_s"] = B / (p["full_step_ms"] / 1e3)
        phases[mode] = p

        # 3. torch.profiler: the top kernels of a few steps.
        try:
            from torch.profiler import ProfilerActivity, profile
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=acts) as prof:
                for _ in range(3):
                    full()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
            try:
                table = prof.key_averages().table(sort_by=key, row_limit=a.top)
            except Exception:  # noqa: BLE001 - older torch names the column self_cuda_time_total
                table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=a.top)
            p["profiler_top"] = table.splitlines()
        except Exception as e:  # noqa: BLE001
            p["profiler_error"] = repr(e)
        del params, opt, x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    res["step_phases"] = phases
    # The goal: the encoder GEMM at >= 50% of the chip's measured peak for its dtype.
    res["encoder_gemm_fraction_of_square_peak"] = {
        m: gemm[f"{m}/encoder"]["tflops"] / gemm[f"{m}/square"]["tflops"] for m in ("f32", "tf32", "bf16")}
    # Minimum GEMM time of a step: 6 GEMMs of B*D*S (2 forward, 4 backward) at the square peak.
    res["gemm_floor_ms"] = {m: 6 * 2 * B * D * S / (gemm[f"{m}/square"]["tflops"] * 1e12) * 1e3
                            for m in ("f32", "tf32", "bf16")}
    common.write_json(a.json, res) if a.json else print(res)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("init")
    p.add_argument("--acts", required=True)
    p.add_argument("--hook", required=True)
    p.add_argument("--d-sae", type=int, required=True)
    p.add_argument("--dec-init-norm", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("train")
    p.add_argument("--acts", required=True)
    p.add_argument("--hook", required=True)
    p.add_argument("--run", required=True, help="our run folder (config.toml, run.json, metrics.jsonl)")
    p.add_argument("--init", required=True)
    p.add_argument("--mode", choices=["f32", "tf32", "bf16"], default="f32")
    p.add_argument("--data", choices=["gpu", "host"], default="gpu",
                   help="rows resident on the device, or in (pinned) host memory copied per batch")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=0, help="default: our run's tokens / batch")
    p.add_argument("--max-rows", type=int, default=1 << 20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fused", dest="fused", action="store_false", help="torch.optim.Adam without fused=True")
    p.add_argument("--json")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("profile")
    p.add_argument("--device", default="cuda")
    p.add_argument("--d-in", type=int, default=768)
    p.add_argument("--d-sae", type=int, default=24576)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--square", type=int, default=8192, help="side of the square GEMM measuring the peak")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json")
    p.set_defaults(fn=cmd_profile)

    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
