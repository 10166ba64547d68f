#!/usr/bin/env python3
"""Check that an unravel SAE export loads in SAELens and computes what our Rust SAE computed.

RUN_DIR is an export folder written by our trainer:

    cfg.json                   SAELens 6.x config (architecture "standard" or "gated")
    sae_weights.safetensors    W_enc [d_in,d_sae], b_enc [d_sae], W_dec [d_sae,d_in], b_dec [d_in] (f32);
                               gated: b_gate, r_mag, b_mag [d_sae] instead of b_enc
    sparsity.safetensors       sparsity [d_sae] = log10 feature density
    export_check.safetensors   x [n,d_in] (raw activations), feature_acts [n,d_sae], x_hat [n,d_in]
                               = what our Rust SAE computed for x

The folder is loaded twice: with `sae_lens.SAE.load_from_disk(RUN_DIR, device="cpu")`, and with
plain numpy from the documented layout (float64):

    x_in  = x - b_dec if cfg["apply_b_dec_to_input"] else x
    f     = relu(x_in @ W_enc + b_enc)
            (gated: pi = x_in @ W_enc, f = (pi + b_gate > 0) * relu(exp(r_mag) * pi + b_mag))
    x_hat = f @ W_dec + b_dec

and every pair (SAELens, numpy, ours) is compared with tolerance 1e-4 * (1 + max|reference|).

    python3 scripts/check_saelens_export.py RUN_DIR
    python3 scripts/check_saelens_export.py /tmp/fake_export --fake [--fake-apply-b-dec false] [--fake-gated]

`--fake` first writes a random export folder (numpy only, x_hat etc. computed by the numpy formula) into
RUN_DIR, to test this script without the trainer.

Prints a table (check, max abs error, tolerance, ok) plus config warnings (failures with --strict), and
exits 0 when every check passes, 1 with a one-line `FAIL: ...` reason on stderr otherwise (2 for a folder that cannot be read).
Needs numpy and safetensors; sae_lens (and torch) optional: without them only the numpy checks run and a
warning says so. Never run in CI.
"""

import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

WEIGHT_SHAPES = {"W_enc": ("d_in", "d_sae"), "b_enc": ("d_sae",), "W_dec": ("d_sae", "d_in"), "b_dec": ("d_in",)}
GATED_SHAPES = {"W_enc": ("d_in", "d_sae"), "b_gate": ("d_sae",), "r_mag": ("d_sae",), "b_mag": ("d_sae",),
                "W_dec": ("d_sae", "d_in"), "b_dec": ("d_in",)}
REL_TOL = 1e-4


def numpy_sae(weights, apply_b_dec):
    """Encode/decode functions of a standard or gated SAE, in float64, from the documented layout."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}

    def encode(x):
        x_in = x - w["b_dec"] if apply_b_dec else x
        if "b_gate" in w:
            pi = x_in @ w["W_enc"]
            return (pi + w["b_gate"] > 0) * np.maximum(np.exp(w["r_mag"]) * pi + w["b_mag"], 0.0)
        return np.maximum(x_in @ w["W_enc"] + w["b_enc"], 0.0)

    def decode(f):
        return f @ w["W_dec"] + w["b_dec"]

    return encode, decode


def load_saelens(run_dir):
    """Return (encode, decode, sae) backed by sae_lens, or None if sae_lens cannot be imported."""
    try:
        import torch
        from sae_lens import SAE
        import sae_lens
    except Exception as e:  # ImportError, or a broken torch install
        print(f"WARNING: sae_lens cannot be imported ({type(e).__name__}: {e}); "
              "checking with numpy only, NOT with SAELens", file=sys.stderr)
        return None
    torch.set_grad_enabled(False)
    sae = SAE.load_from_disk(run_dir, device="cpu")

    def encode(x):
        return sae.encode(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).double().numpy()

    def decode(f):
        return sae.decode(torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32))).double().numpy()

    print(f"sae_lens {sae_lens.__version__} (torch {torch.__version__}): loaded {type(sae).__name__}, "
          f"apply_b_dec_to_input={sae.cfg.apply_b_dec_to_input}")
    return encode, decode, sae


def check_config(cfg, weights, sparsity, sae):
    """Structural checks. Returns (errors, warnings): lists of one-line strings."""
    errors, warnings = [], []
    for key in ("d_in", "d_sae", "dtype", "apply_b_dec_to_input"):
        if key not in cfg:
            errors.append(f"cfg.json has no {key!r}")
    arch = cfg.get("architecture", "standard")
    if arch not in ("standard", "gated"):
        errors.append(f"cfg.json architecture is {arch!r}, this script checks 'standard' and 'gated' only")
    shapes = GATED_SHAPES if arch == "gated" else WEIGHT_SHAPES
    for key in ("normalize_activations", "reshape_activations"):
        if cfg.get(key, "none") != "none":
            errors.append(f"cfg.json {key} is {cfg.get(key)!r}; our export must write 'none'")
    dims = {"d_in": cfg.get("d_in"), "d_sae": cfg.get("d_sae")}
    if set(weights) != set(shapes):
        errors.append(f"sae_weights.safetensors holds {sorted(weights)}, SAELens needs exactly {sorted(shapes)}")
    for name, axes in shapes.items():
        if name in weights:
            want = tuple(dims[a] for a in axes)
            if weights[name].shape != want:
                errors.append(f"{name} has shape {weights[name].shape}, cfg says {want}")
            if weights[name].dtype != np.float32:
                warnings.append(f"{name} is {weights[name].dtype}, documented as float32")
            if not np.isfinite(weights[name]).all():
                errors.append(f"{name} has non-finite values")
    meta = cfg.get("metadata") or {}
    if not (cfg.get("sae_lens_version") or meta.get("sae_lens_version")):
        warnings.append("no metadata.sae_lens_version: SAELens takes the pre-6.0 path and drops the nested "
                        "metadata (model_name, hook_name, ...)")
    for key in ("model_name", "hook_name", "context_size"):
        if key not in meta:
            warnings.append(f"metadata has no {key!r}")
    if sae is not None and meta.get("hook_name") is not None and sae.cfg.metadata.hook_name != meta["hook_name"]:
        warnings.append(f"SAELens loaded metadata.hook_name={sae.cfg.metadata.hook_name!r}, cfg.json says "
                        f"{meta['hook_name']!r}")
    if sparsity is None:
        warnings.append("no sparsity.safetensors")
    else:
        s = sparsity.get("sparsity")
        if s is None:
            errors.append(f"sparsity.safetensors holds {sorted(sparsity)}, expected the key 'sparsity'")
        elif s.shape != (dims["d_sae"],):
            errors.append(f"sparsity has shape {s.shape}, expected ({dims['d_sae']},)")
        elif np.isnan(s).any() or (s > 1e-6).any():
            errors.append("sparsity has NaN or values > 0 (it is log10 of a density)")
        elif np.isinf(s).any():
            warnings.append(f"sparsity has {int(np.isinf(s).sum())} -inf entries (SAELens writes "
                            "log10(density + 1e-10), i.e. -10 for dead features)")
    return errors, warnings


def compare(name, got, ref):
    """One table row: (name, max abs error, tolerance, ok)."""
    if got.shape != ref.shape:
        return name, float("inf"), 0.0, False, f"shape {got.shape} vs {ref.shape}"
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if got.size else 0.0
    tol = REL_TOL * (1.0 + float(np.max(np.abs(ref))) if ref.size else 1.0)
    return name, err, tol, bool(err <= tol), ""


def make_fake(run_dir, apply_b_dec, gated=False, seed=0, d_in=64, d_sae=256, n=32):
    """Write a random export folder: weights, cfg, sparsity, and export_check from the numpy formula."""
    rng = np.random.default_rng(seed)
    os.makedirs(run_dir, exist_ok=True)
    w_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    weights = {
        "W_enc": (w_dec.T * 0.5 + 0.05 * rng.standard_normal((d_in, d_sae))).astype(np.float32),
        "b_enc": (-0.3 + 0.1 * rng.standard_normal(d_sae)).astype(np.float32),
        "W_dec": w_dec,
        "b_dec": (0.5 * rng.standard_normal(d_in)).astype(np.float32),
    }
    if gated:
        weights["b_gate"] = weights.pop("b_enc")
        weights["r_mag"] = (0.3 * rng.standard_normal(d_sae)).astype(np.float32)
        weights["b_mag"] = (0.1 * rng.standard_normal(d_sae)).astype(np.float32)
    cfg = {
        "architecture": "gated" if gated else "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": apply_b_dec, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.0.0", "sae_lens_training_version": None, "model_name": "fake",
                     "hook_name": "blocks.0.hook_resid_post", "hook_head_index": None, "context_size": 16,
                     "prepend_bos": True, "dataset_path": "fake"},
    }
    with open(os.path.join(run_dir, "cfg.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    save_file(weights, os.path.join(run_dir, "sae_weights.safetensors"))
    density = rng.uniform(0.0, 0.2, d_sae)
    save_file({"sparsity": np.log10(density + 1e-10).astype(np.float32)}, os.path.join(run_dir, "sparsity.safetensors"))
    x = (2.0 * rng.standard_normal((n, d_in))).astype(np.float32)
    encode, decode = numpy_sae(weights, apply_b_dec)
    f = encode(x)
    save_file({"x": x, "feature_acts": f.astype(np.float32), "x_hat": decode(f).astype(np.float32)},
              os.path.join(run_dir, "export_check.safetensors"))
    print(f"wrote a fake {cfg['architecture']} export (apply_b_dec_to_input={apply_b_dec}, d_in {d_in}, d_sae {d_sae}, n {n}) to {run_dir}")


def read_folder(run_dir):
    def path(name):
        return os.path.join(run_dir, name)

    with open(path("cfg.json")) as fh:
        cfg = json.load(fh)
    weights = load_file(path("sae_weights.safetensors"))
    sparsity = load_file(path("sparsity.safetensors")) if os.path.exists(path("sparsity.safetensors")) else None
    check = load_file(path("export_check.safetensors"))
    missing = {"x", "feature_acts", "x_hat"} - set(check)
    if missing:
        raise ValueError(f"export_check.safetensors lacks {sorted(missing)}")
    return cfg, weights, sparsity, check


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="export folder (cfg.json, sae_weights.safetensors, sparsity.safetensors, "
                                    "export_check.safetensors)")
    ap.add_argument("--numpy-only", action="store_true", help="skip SAELens even if it is installed")
    ap.add_argument("--strict", action="store_true", help="treat config warnings (e.g. metadata SAELens drops) as failures")
    ap.add_argument("--fake", action="store_true", help="first write a random export folder into RUN_DIR (testing)")
    ap.add_argument("--fake-apply-b-dec", choices=["true", "false"], default="true",
                    help="apply_b_dec_to_input of the --fake folder (default true)")
    ap.add_argument("--fake-gated", action="store_true", help="the --fake folder is a gated SAE")
    args = ap.parse_args()

    if args.fake:
        make_fake(args.run_dir, args.fake_apply_b_dec == "true", args.fake_gated)
    try:
        cfg, weights, sparsity, check = read_folder(args.run_dir)
    except Exception as e:
        print(f"FAIL: cannot read {args.run_dir}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    x, ours_f, ours_xhat = (check[k].astype(np.float64) for k in ("x", "feature_acts", "x_hat"))
    apply_b_dec = bool(cfg.get("apply_b_dec_to_input", True))  # SAELens' default when the key is absent
    print(f"{args.run_dir}: d_in {cfg.get('d_in')}, d_sae {cfg.get('d_sae')}, apply_b_dec_to_input "
          f"{cfg.get('apply_b_dec_to_input', '(absent -> true)')}, n = {x.shape[0]} check rows")

    saelens = None
    if args.numpy_only:
        print("WARNING: --numpy-only: SAELens not checked", file=sys.stderr)
    else:
        try:
            saelens = load_saelens(args.run_dir)
        except Exception as e:
            reason = " ".join(str(e).split())
            print(f"FAIL: SAELens cannot load {args.run_dir}: {type(e).__name__}: {reason[:400]}", file=sys.stderr)
            return 1

    errors, warnings = check_config(cfg, weights, sparsity, saelens[2] if saelens else None)
    for w in warnings:
        print(f"warning: {w}")
    if args.strict:
        errors += [f"(--strict) {w}" for w in warnings]
    if errors:
        for e in errors[1:]:
            print(f"error: {e}")
        print(f"FAIL: {errors[0]}", file=sys.stderr)
        return 1

    np_encode, np_decode = numpy_sae(weights, apply_b_dec)
    np_f = np_encode(x)
    np_xhat = np_decode(np_f)
    rows = [
        compare("numpy encode(x) vs ours feature_acts", np_f, ours_f),
        compare("numpy decode(encode(x)) vs ours x_hat", np_xhat, ours_xhat),
    ]
    if saelens:
        sl_encode, sl_decode, _ = saelens
        sl_f = sl_encode(x)
        sl_xhat = sl_decode(sl_f)
        rows = [
            compare("sae_lens encode(x) vs ours feature_acts", sl_f, ours_f),
            compare("sae_lens decode(encode(x)) vs ours x_hat", sl_xhat, ours_xhat),
            compare("sae_lens decode(ours feature_acts) vs ours x_hat", sl_decode(ours_f), ours_xhat),
        ] + rows + [
            compare("sae_lens encode(x) vs numpy", sl_f, np_f),
            compare("sae_lens decode(encode(x)) vs numpy", sl_xhat, np_xhat),
        ]
    l0 = float((ours_f > 0).sum(-1).mean()) if ours_f.size else 0.0
    print(f"ours: mean L0 {l0:.1f} of {ours_f.shape[-1]}, max|x_hat| {np.abs(ours_xhat).max():.4g}")

    width = max(len(r[0]) for r in rows)
    print(f"\n{'check':<{width}}  {'max abs err':>11}  {'tolerance':>9}  ok")
    for name, err, tol, ok, note in rows:
        print(f"{name:<{width}}  {err:>11.3e}  {tol:>9.3e}  {'yes' if ok else 'NO'}{'  ' + note if note else ''}")
    bad = [r for r in rows if not r[3]]
    if bad:
        name, err, tol, _, note = bad[0]
        print(f"FAIL: {name}: max abs error {err:.3e} > tolerance {tol:.3e}{' (' + note + ')' if note else ''}"
              f"{f' (+{len(bad) - 1} more failing checks)' if len(bad) > 1 else ''}", file=sys.stderr)
        return 1
    print(f"\nOK: {len(rows)} checks passed{'' if saelens else ' (numpy only: SAELens NOT checked)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
