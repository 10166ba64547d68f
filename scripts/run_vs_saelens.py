#!/usr/bin/env python3
"""Check `unravel verify`'s synthetic-data metrics on an EXISTING trained run against SAELens.

Where scripts/metrics_vs_saelens.py makes its own small planted cases, this takes run folders
trained on a SynthSAEBench generator (`unravel train --synth synth-sae-bench-16k`) as they are:

1. `unravel synth --preset PRESET --tokens N --save-activations` writes N rows of the generator
   with their true codes (no --seed: the preset's own seed, so the dictionary is the one the run
   was trained on; the dataset's fingerprint is checked against the run's run.json). The dataset
   is made once in WORK and reused by every run and later calls.
2. The run's SAELens export (cfg.json + sae_weights.safetensors) is copied to WORK/<run>/sae, so
   nothing is written into the run folder (verify writes its plot and a lock beside the SAE).
3. `unravel verify --truth DATASET --sae COPY --samples N` scores it on the last N rows.
4. `sae_lens.SAE.load_from_disk(COPY)` (a GatedSAE for architecture "gated") goes through
   `sae_lens.synthetic.eval_sae_on_synthetic_data` on the same rows and stored codes; the codes
   are kept sparse and made dense one batch at a time.

Every metric is printed side by side with |diff| and PASS/FAIL at 1e-3; exit 1 on any FAIL.

    /tmp/venv/bin/python scripts/run_vs_saelens.py --unravel target/release/unravel \\
        --run runs/a --run runs/b [--preset synth-sae-bench-16k] [--samples 20000] [--work DIR]
        [--out results.json]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

import sae_lens
from sae_lens import SAE
from sae_lens.synthetic import eval_sae_on_synthetic_data

from metrics_vs_saelens import (TOL, Dictionary, compare, dataset_rows, print_table, run,
                                verify_and_truth)


class SparseCodes:
    """Duck-typed ActivationGenerator: the stored sparse codes of rows start.., handed out in
    order, made dense ([batch, features]) one batch at a time."""

    def __init__(self, truth, start, features):
        token = truth["act_token"].numpy()
        keep = token >= start
        order = np.argsort(token[keep], kind="stable")
        self.token = token[keep][order] - start
        self.feature = truth["act_feature"].numpy()[keep][order]
        self.value = truth["act_value"].float().numpy()[keep][order]
        self.features, self.at = features, 0

    def sample(self, n):
        lo, hi = np.searchsorted(self.token, [self.at, self.at + n])
        dense = torch.zeros(n, self.features)
        dense[torch.from_numpy(self.token[lo:hi] - self.at),
              torch.from_numpy(self.feature[lo:hi])] = torch.from_numpy(self.value[lo:hi])
        self.at += n
        return dense


def make_dataset(unravel, preset, samples, work):
    """N rows of the preset with their codes (made once, reused when already in WORK)."""
    synth = os.path.join(work, f"{preset}-{samples}")
    if not os.path.exists(os.path.join(synth, "__unravel__", "manifest.json")):
        run([unravel, "synth", "--preset", preset, "--tokens", str(samples), "--save-activations",
             "--out", synth])
    return synth


def fingerprint(synth):
    """The generator's fingerprint, from the dataset's model id `synthetic:bench(synth-bench:…)`."""
    model_id = json.load(open(os.path.join(synth, "__unravel__", "manifest.json")))["model"]["id"]
    return model_id.split("(", 1)[1].rstrip(")") if "(" in model_id else model_id


def check_run(unravel, run_dir, synth, samples, work):
    name = os.path.basename(os.path.normpath(run_dir))
    run_json = os.path.join(run_dir, "run.json")
    if os.path.exists(run_json):
        trained_on = json.load(open(run_json)).get("manifest_sha256")
        if trained_on != fingerprint(synth):
            sys.exit(f"{run_dir} was trained on {trained_on}, the dataset is {fingerprint(synth)}")
    # A copy of the export: verify writes its plot and lock beside the SAE, not into the run.
    sae_dir = os.path.join(work, name, "sae")
    os.makedirs(sae_dir, exist_ok=True)
    for f in ("cfg.json", "sae_weights.safetensors"):
        shutil.copy2(os.path.join(run_dir, f), sae_dir)
    ours, truth, directions = verify_and_truth(unravel, synth, sae_dir, samples,
                                               os.path.join(work, name, "verify.json"))
    rows = dataset_rows(synth)
    start = rows.shape[0] - samples  # verify's rows: the last N (synth rounds N up to 64s)
    sae = SAE.load_from_disk(sae_dir, device="cpu")
    architecture = json.load(open(os.path.join(sae_dir, "cfg.json")))["architecture"]
    with torch.no_grad():
        theirs = eval_sae_on_synthetic_data(
            sae, Dictionary(directions, torch.from_numpy(rows[start:])),
            SparseCodes(truth, start, directions.shape[0]), num_samples=samples, batch_size=2048)
    shape = {"architecture": architecture, "saelens_class": type(sae).__name__,
             "features": directions.shape[0], "d_sae": sae.cfg.d_sae, "d": directions.shape[1],
             "samples": samples, "rows": f"{start}..{rows.shape[0]}"}
    return name, shape, compare(ours, theirs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unravel", default="target/release/unravel")
    ap.add_argument("--run", action="append", required=True, help="a run folder (repeatable)")
    ap.add_argument("--preset", default="synth-sae-bench-16k")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--work", default=None, help="work folder (kept; default a temporary one)")
    ap.add_argument("--out", default=None, help="also write the results here (JSON)")
    a = ap.parse_args()
    results, worst = {}, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or tmp
        os.makedirs(work, exist_ok=True)
        synth = make_dataset(a.unravel, a.preset, a.samples, work)
        for run_dir in a.run:
            name, shape, out = check_run(a.unravel, run_dir, synth, a.samples, work)
            results[name] = {"run": os.path.abspath(run_dir), "shape": shape, "metrics": out}
            print(f"{name}: {shape}")
            worst = max(worst, print_table(out))
    print(f"sae_lens {sae_lens.__version__}, {a.preset} ({fingerprint(synth)}): "
          f"max |diff| {worst:.2e} (tolerance {TOL}): {'PASS' if worst < TOL else 'FAIL'}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"sae_lens": sae_lens.__version__, "torch": torch.__version__,
                       "preset": a.preset, "tolerance": TOL, "max_abs_diff": worst,
                       "runs": results}, f, indent=2, sort_keys=True)
            f.write("\n")
    sys.exit(0 if worst < TOL else 1)


if __name__ == "__main__":
    main()
