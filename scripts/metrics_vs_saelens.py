#!/usr/bin/env python3
"""Check `unravel verify`'s synthetic-data metrics against SAELens's own functions.

For each case it makes a small planted dataset with `unravel synth --save-activations` (the
per-token true codes stored in truth/), trains a short SAE with `unravel train` (SAELens export in
the run folder), and runs `unravel verify --samples N`. It then loads the same export with
`sae_lens.SAE.load_from_disk` and hands `sae_lens.synthetic.eval_sae_on_synthetic_data` the
*same* samples: a feature dictionary whose `feature_vectors` are the planted directions and which
returns the dataset's own rows (so noise and f32 rounding are the same), and an activation
generator that returns the stored codes of those rows in order. Every metric is printed beside
ours with the absolute difference; the check passes when all differ by less than 1e-3.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install sae-lens
    /tmp/venv/bin/python scripts/metrics_vs_saelens.py [--unravel target/debug/unravel]
        [--out tests/fixtures/metrics_vs_saelens.json]

To check an existing trained run (e.g. one trained on `--synth synth-sae-bench-16k`) rather than
these planted cases, see scripts/run_vs_saelens.py, which reuses the pieces below.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

import sae_lens
from sae_lens import SAE
from safetensors.torch import save_file
from sae_lens.synthetic import eval_sae_on_synthetic_data, feature_uniqueness, mean_correlation_coefficient

TOL = 1e-3

# name, synth flags, train flags, samples. "wide": more latents than features; "narrow": fewer
# (MCC over the d_sae matched pairs); "noisy": Gaussian noise on the rows, power-law frequencies;
# "dead": latents that never fire; "large": a bigger matching. Then "scale" (`scale_case`).
CASES = [
    ("wide", ["--features", "64", "--dims", "32", "--density", "0.05", "--seed", "1"],
     ["--d-sae", "128"], 8000),
    ("narrow", ["--features", "96", "--dims", "32", "--density", "0.04", "--seed", "2"],
     ["--d-sae", "48"], 8000),
    ("noisy", ["--features", "64", "--dims", "24", "--density", "0.1", "--power-law", "0.97",
               "--noise", "0.05", "--seed", "3"], ["--d-sae", "96", "--l1-coefficient", "2"], 6000),
    # A strong L1 penalty: dead latents.
    ("dead", ["--features", "64", "--dims", "32", "--density", "0.05", "--seed", "4"],
     ["--d-sae", "128", "--l1-coefficient", "15"], 8000),
    # A larger assignment problem: 512 features, 384 latents.
    ("large", ["--features", "512", "--dims", "64", "--density", "0.01", "--seed", "5"],
     ["--d-sae", "384"], 10000),
]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")


def dataset_rows(synth_dir, hook="synthetic"):
    """All rows of the dataset's shards in file order, [N, d] float32."""
    manifest = json.load(open(os.path.join(synth_dir, "__unravel__", "manifest.json")))
    rows = []
    for shard in manifest["shards"]:
        table = pq.read_table(os.path.join(synth_dir, shard["file"]), columns=[hook])
        col = table.column(hook).combine_chunks()
        d = col.type.list_size
        rows.append(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, d))
    return np.concatenate(rows).astype(np.float32)


class Dictionary:
    """Duck-typed FeatureDictionary: the planted directions, and the dataset's own rows for the
    codes handed out in the same order."""

    def __init__(self, directions, rows):
        self.feature_vectors = directions
        self.rows, self.at = rows, 0

    def __call__(self, feature_acts):
        n = feature_acts.shape[0]
        out = self.rows[self.at:self.at + n]
        self.at += n
        return out


class Codes:
    """Duck-typed ActivationGenerator: the stored codes of the chosen rows, in order."""

    def __init__(self, dense):
        self.dense, self.at = dense, 0

    def sample(self, n):
        out = self.dense[self.at:self.at + n]
        self.at += n
        return out


def verify_and_truth(unravel, synth, sae_dir, samples, ours_path):
    """`unravel verify` of the SAE on the dataset's last `samples` rows (its JSON), and the
    dataset's ground truth with its planted directions as f32."""
    run([unravel, "verify", "--truth", synth, "--sae", sae_dir, "--samples", str(samples),
         "--json", ours_path])
    ours = json.load(open(ours_path))
    truth = load_file(os.path.join(synth, "__unravel__", "truth", "ground_truth.safetensors"))
    return ours, truth, truth["directions"].float()


def case(unravel, work, name, synth_flags, train_flags, samples):
    synth, sae_dir = os.path.join(work, name, "synth"), os.path.join(work, name, "sae")
    run([unravel, "synth", *synth_flags, "--tokens", "40000", "--save-activations", "--out", synth])
    run([unravel, "train", "--acts", synth, *train_flags, "--tokens", "400000", "--batch", "1024",
         "--out", sae_dir])
    ours, truth, directions = verify_and_truth(unravel, synth, sae_dir, samples,
                                               os.path.join(work, name, "verify.json"))
    n = directions.shape[0]
    rows = dataset_rows(synth)
    start = rows.shape[0] - samples
    dense = torch.zeros(rows.shape[0], n)
    dense[truth["act_token"], truth["act_feature"]] = truth["act_value"]
    sae = SAE.load_from_disk(sae_dir, device="cpu")
    with torch.no_grad():
        theirs = eval_sae_on_synthetic_data(
            sae, Dictionary(directions, torch.from_numpy(rows[start:])), Codes(dense[start:]),
            num_samples=samples, batch_size=2048)
    shape = {"features": n, "d_sae": sae.cfg.d_sae, "d": directions.shape[1], "samples": samples}
    return shape, compare(ours, theirs)


def compare(ours, theirs):
    """Our verify.json beside SAELens's SyntheticDataEvalResult: {metric: {unravel, saelens,
    abs_diff}}."""
    s = ours["samples"]
    pairs = {
        "mcc": (ours["mcc"], theirs.mcc),
        "uniqueness": (ours["uniqueness"], theirs.uniqueness),
        "true_l0": (s["true_l0"], theirs.true_l0),
        "l0": (s["l0"], theirs.sae_l0),
        "dead_latents": (s["dead_latents"], theirs.dead_latents),
        "shrinkage": (s["shrinkage"], theirs.shrinkage),
        "explained_variance": (s["explained_variance"], theirs.explained_variance),
        "precision": (s["precision"], theirs.classification.precision),
        "recall": (s["recall"], theirs.classification.recall),
        "f1": (s["f1"], theirs.classification.f1_score),
        "accuracy": (s["accuracy"], theirs.classification.accuracy),
    }
    return {k: {"unravel": a, "saelens": b, "abs_diff": abs(a - b)} for k, (a, b) in pairs.items()}


def print_table(out):
    """The metrics side by side, each with |diff| and PASS/FAIL at TOL; returns the worst |diff|."""
    print(f"  {'metric':<20} {'unravel':>12} {'SAELens':>12} {'|diff|':>10}")
    for k, v in out.items():
        verdict = "PASS" if v["abs_diff"] < TOL else "FAIL"
        print(f"  {k:<20} {v['unravel']:>12.6f} {v['saelens']:>12.6f} {v['abs_diff']:>10.2e}  {verdict}")
    return max(v["abs_diff"] for v in out.values())


def scale_case(unravel, work):
    """The decoder metrics at SynthSAEBench-16k's size: 16 384 random directions in 768 dims, 4 096
    latents (half near a true direction, half random: a hard matching), no samples."""
    root = os.path.join(work, "scale")
    os.makedirs(os.path.join(root, "truth", "__unravel__", "truth"))
    os.makedirs(os.path.join(root, "sae"))
    torch.manual_seed(0)
    n, s, d = 16384, 4096, 768
    g = torch.randn(n, d)
    g /= g.norm(dim=1, keepdim=True)
    w = g[torch.randperm(n)[:s]] + 0.7 * torch.randn(s, d) / d ** 0.5
    w[s // 2:] = torch.randn(s // 2, d)
    save_file({"directions": g.contiguous()},
              os.path.join(root, "truth", "__unravel__", "truth", "ground_truth.safetensors"))
    save_file({"W_enc": w.T.contiguous(), "b_enc": torch.zeros(s), "W_dec": w.contiguous(),
               "b_dec": torch.zeros(d)}, os.path.join(root, "sae", "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": d, "d_sae": s, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none",
           "metadata": {"hook_name": "synthetic", "sae_lens_version": "6.0.0"}}
    json.dump(cfg, open(os.path.join(root, "sae", "cfg.json"), "w"))
    ours_path = os.path.join(root, "verify.json")
    run([unravel, "verify", "--truth", os.path.join(root, "truth"), "--sae",
         os.path.join(root, "sae"), "--samples", "0", "--json", ours_path])
    ours = json.load(open(ours_path))
    pairs = {"mcc": (ours["mcc"], mean_correlation_coefficient(w, g)),
             "uniqueness": (ours["uniqueness"], feature_uniqueness(w, g))}
    out = {k: {"unravel": a, "saelens": b, "abs_diff": abs(a - b)} for k, (a, b) in pairs.items()}
    return {"features": n, "d_sae": s, "d": d, "samples": 0}, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unravel", default="target/debug/unravel")
    ap.add_argument("--out", default=None, help="also write the results here (JSON)")
    a = ap.parse_args()
    results, worst = {}, 0.0
    with tempfile.TemporaryDirectory() as work:
        for name, synth_flags, train_flags, samples in CASES + [("scale", None, None, 0)]:
            if name == "scale":
                shape, out = scale_case(a.unravel, work)
            else:
                shape, out = case(a.unravel, work, name, synth_flags, train_flags, samples)
            results[name] = {"shape": shape, "synth": synth_flags, "train": train_flags,
                             "metrics": out}
            print(f"{name}: {shape}")
            worst = max(worst, print_table(out))
    summary = {"sae_lens": sae_lens.__version__, "torch": torch.__version__, "tolerance": TOL,
               "max_abs_diff": worst, "cases": results}
    print(f"sae_lens {sae_lens.__version__}: max |diff| {worst:.2e} (tolerance {TOL})")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\n")
    sys.exit(0 if worst < TOL else 1)


if __name__ == "__main__":
    main()
