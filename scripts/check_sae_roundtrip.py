#!/usr/bin/env python3
"""SAEs in and out (issue 26 item 3), checked against SAELens itself:

1. our export -> SAELens `SAE.load_from_disk` -> its encode of `export_check.safetensors`'s x
   equals our feature_acts -> SAELens `save_model` -> `unravel eval` of SAELens's copy gives the
   same report as of ours (identical encodes and reconstructions, to the last digit);
2. the same copy with `apply_b_dec_to_input: false` (b_dec folded into b_enc, as SAELens SAEs
   trained that way are) and with `normalize_activations: expected_average_only_in` (which a
   local folder runs without normalization in SAELens): SAELens's encodes equal the original's,
   and unravel's eval report equals ours;
3. a dictionary_learning `ae.pt` (random weights, written with torch) converted by
   scripts/convert_dictionary_learning.py: SAELens's encode equals dictionary_learning's
   relu((x - bias) @ encoder.weight.T + encoder.bias), and `unravel eval` and `verify` read it.

Usage: python scripts/check_sae_roundtrip.py [--unravel target/release/unravel]
Needs (never in CI): pip install sae-lens safetensors
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent


def sh(*args):
    r = subprocess.run(list(map(str, args)), capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL: {' '.join(map(str, args))}\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return r.stdout.strip()


def saelens_encode(folder, x):
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(folder), device="cpu")
    with torch.no_grad():
        return sae, sae.encode(x)


def eval_report(unravel, sae, acts, out):
    # Every shard: a run folder of ours would otherwise be evaluated on its own held-out shards.
    sh(unravel, "eval", "--sae", sae, "--acts", acts, "--shards", "all", "--json", out)
    r = json.loads(Path(out).read_text())
    return {k: v for k, v in r.items() if k not in ("sae",)}


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unravel", default="target/release/unravel")
    a = ap.parse_args()
    u = str(Path(a.unravel).resolve())
    work = Path(tempfile.mkdtemp(prefix="sae-roundtrip-"))
    acts, run = work / "acts", work / "run"
    sh(u, "synth", "--features", 64, "--dims", 32, "--density", 0.05, "--tokens", 100000, "--out", acts)
    sh(u, "train", "--acts", acts, "--d-sae", 128, "--tokens", 300000, "--out", run)
    ok = True

    # 1. ours -> SAELens -> SAELens's save -> ours.
    chk = load_file(run / "export_check.safetensors")
    sae, f = saelens_encode(run, chk["x"])
    err = (f - chk["feature_acts"]).abs().max().item()
    ok &= check("SAELens encodes our export", err < 1e-4, f"max |diff| {err:.2e} over {tuple(f.shape)}")
    resaved = work / "resaved"
    sae.save_model(str(resaved))
    mine = eval_report(u, run, acts, work / "a.json")
    theirs = eval_report(u, resaved, acts, work / "b.json")
    ok &= check("unravel eval of SAELens's re-save", mine == theirs,
                f"EV {theirs['ev']:.6f} L0 {theirs['l0']:.4f} (ours: EV {mine['ev']:.6f} L0 {mine['l0']:.4f})")

    # 2. apply_b_dec_to_input false (b_dec folded into b_enc) and expected_average_only_in.
    w = load_file(resaved / "sae_weights.safetensors")
    cfg = json.loads((resaved / "cfg.json").read_text())
    for variant in ["flipped_apply_b_dec_to_input", "expected_average_only_in"]:
        v = work / variant
        v.mkdir()
        c, wv = dict(cfg), dict(w)
        if variant == "flipped_apply_b_dec_to_input":
            # relu((x - b_dec) W_enc + b_enc) = relu(x W_enc + b_enc - b_dec W_enc)
            c["apply_b_dec_to_input"] = not cfg["apply_b_dec_to_input"]
            sign = 1.0 if c["apply_b_dec_to_input"] else -1.0
            wv["b_enc"] = (w["b_enc"] + sign * (w["b_dec"] @ w["W_enc"])).contiguous()
        else:
            c["normalize_activations"] = "expected_average_only_in"
        (v / "cfg.json").write_text(json.dumps(c))
        save_file(wv, v / "sae_weights.safetensors")
        _, fv = saelens_encode(v, chk["x"])
        err = (fv - chk["feature_acts"]).abs().max().item()
        ok &= check(f"SAELens encodes the {variant} copy", err < 1e-4, f"max |diff| {err:.2e}")
        rv = eval_report(u, v, acts, work / f"{variant}.json")
        close = all(abs(rv[k] - mine[k]) <= 1e-5 * max(1.0, abs(mine[k])) for k in ("ev", "mse", "l0"))
        ok &= check(f"unravel eval of the {variant} copy", close,
                    f"EV {rv['ev']:.6f} L0 {rv['l0']:.4f} (original: EV {mine['ev']:.6f})")

    # 3. dictionary_learning ae.pt -> converter -> SAELens and unravel.
    torch.manual_seed(0)
    d_in, d_sae = 32, 96
    sd = {
        "encoder.weight": torch.randn(d_sae, d_in) / d_in**0.5,
        "encoder.bias": torch.randn(d_sae) * 0.1,
        "decoder.weight": torch.nn.functional.normalize(torch.randn(d_in, d_sae), dim=0),
        "bias": torch.randn(d_in) * 0.1,
    }
    dl = work / "dl"
    dl.mkdir()
    torch.save(sd, dl / "ae.pt")
    (dl / "config.json").write_text(json.dumps({"trainer": {"layer": 0, "lm_name": "synthetic"},
                                                 "buffer": {"ctx_len": 128}}))
    conv = work / "dl-saelens"
    print(sh(sys.executable, HERE / "convert_dictionary_learning.py", dl / "ae.pt", conv,
             "--hook", "synthetic"))
    x = chk["x"]
    want = torch.relu((x - sd["bias"]) @ sd["encoder.weight"].T + sd["encoder.bias"])
    _, got = saelens_encode(conv, x)
    err = (got - want).abs().max().item()
    ok &= check("SAELens encodes the converted ae.pt as dictionary_learning", err < 1e-5, f"max |diff| {err:.2e}")
    r = eval_report(u, conv, acts, work / "dl.json")
    ok &= check("unravel eval reads the converted ae.pt", "ev" in r, f"EV {r['ev']:.4f} L0 {r['l0']:.2f}")
    sh(u, "verify", "--truth", acts, "--sae", conv, "--json", work / "dl-verify.json")
    v = json.loads((work / "dl-verify.json").read_text())
    ok &= check("unravel verify reads the converted ae.pt", v["d_sae"] == d_sae, f"MMCS {v['mmcs']:.4f} (random weights)")

    shutil.rmtree(work)
    print("all checks passed" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
