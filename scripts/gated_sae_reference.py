#!/usr/bin/env python3
"""SAELens 6's GatedTrainingSAE on fixed tiny weights: the reference the gated step is tested against.

Builds a `GatedTrainingSAE` (float64, apply_b_dec_to_input true, as SAELens trains it) with fixed
weights chosen so that every case of the gate occurs (gate closed; gate open with the magnitude
ReLU on; gate open with it off), runs `training_forward_pass` on a fixed batch with a fixed L1
coefficient, back-propagates the total loss and writes, in SAELens's names and layouts:

    tests/fixtures/gated/step.json   d_in, d_sae, l1_coefficient, x [B, d_in], params {W_enc [d_in, d_sae],
                                     b_gate, r_mag, b_mag, W_dec, b_dec}, feature_acts [B, d_sae],
                                     losses {mse_loss, l1_loss, auxiliary_reconstruction_loss}, loss,
                                     grads {same names and shapes as params}, versions
    tests/fixtures/gated/saelens/    the same SAE as SAELens saves it (`save_inference_model`: cfg.json,
                                     sae_weights.safetensors), which `unravel` must import

`src/sae/engine_tests.rs` (gated_step_matches_saelens) loads it. Never run in CI:

    /tmp/interop-venv/bin/python scripts/gated_sae_reference.py [OUT_JSON]
"""

import json
import os
import sys

import numpy as np
import torch
import sae_lens
from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput

D_IN, D_SAE, BATCH, L1 = 5, 7, 6, 0.7


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(
        os.path.dirname(__file__), "..", "tests", "fixtures", "gated", "step.json"))
    torch.manual_seed(0)
    cfg = GatedTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, dtype="float64", l1_coefficient=L1)
    sae = GatedTrainingSAE(cfg)
    rng = np.random.default_rng(24)
    params = {
        "W_enc": rng.normal(0, 0.6, (D_IN, D_SAE)),
        "b_gate": rng.normal(-0.1, 0.4, D_SAE),
        "r_mag": rng.normal(0, 0.5, D_SAE),
        "b_mag": rng.normal(-0.2, 0.5, D_SAE),
        "W_dec": rng.normal(0, 0.5, (D_SAE, D_IN)),
        "b_dec": rng.normal(0, 0.3, D_IN),
    }
    with torch.no_grad():
        for name, value in params.items():
            getattr(sae, name).copy_(torch.from_numpy(value))
    x = torch.from_numpy(rng.normal(0, 1.0, (BATCH, D_IN)))
    step = TrainStepInput(sae_in=x, coefficients={"l1": L1}, dead_neuron_mask=None,
                          n_training_steps=0, is_logging_step=False)
    result = sae.training_forward_pass(step)
    result.loss.backward()
    feature_acts = result.feature_acts.detach()
    with torch.no_grad():
        pi = (x - sae.b_dec) @ sae.W_enc
        gate = pi + sae.b_gate > 0
        mag = torch.exp(sae.r_mag) * pi + sae.b_mag > 0
    cases = {"gate closed": int((~gate).sum()), "gate open, magnitude on": int((gate & mag).sum()),
             "gate open, magnitude off": int((gate & ~mag).sum())}
    assert all(cases.values()), f"every case of the gate must occur: {cases}"
    doc = {
        "d_in": D_IN, "d_sae": D_SAE, "l1_coefficient": L1,
        "x": x.tolist(),
        "params": {k: v.tolist() for k, v in params.items()},
        "feature_acts": feature_acts.tolist(),
        "losses": {k: float(v.detach()) for k, v in result.losses.items()},
        "loss": float(result.loss.detach()),
        "grads": {k: getattr(sae, k).grad.tolist() for k in params},
        "cases": cases,
        "versions": {"sae_lens": sae_lens.__version__, "torch": torch.__version__},
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)
    sae.save_inference_model(os.path.join(os.path.dirname(out), "saelens"))
    print(f"wrote {out}: losses {doc['losses']}, loss {doc['loss']:.6f}, cases {cases}")


if __name__ == "__main__":
    main()
