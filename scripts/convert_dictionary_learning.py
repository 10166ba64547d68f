#!/usr/bin/env python3
"""Convert a dictionary_learning `ae.pt` (a pickled torch state dict) into a SAELens-layout SAE
folder (cfg.json + sae_weights.safetensors) that `unravel eval`, `audit --sae` and `verify --sae`
read, and that SAELens loads with `SAE.load_from_disk`.

Usage: python scripts/convert_dictionary_learning.py AE_PT OUT_DIR [--hook NAME] [--model NAME]

dictionary_learning's standard AutoEncoder computes
    f = relu(encoder(x - bias)),  x_hat = decoder(f) + bias
with encoder.weight [d_sae, d_in], encoder.bias [d_sae], decoder.weight [d_in, d_sae],
bias [d_in]: SAELens's `standard` architecture with apply_b_dec_to_input = true,
W_enc = encoder.weight^T, b_enc = encoder.bias, W_dec = decoder.weight^T, b_dec = bias.
The hook and model names come from the `config.json` dictionary_learning writes beside
`ae.pt` (trainer.layer, trainer.lm_name, buffer.ctx_len) when present, else from the flags.
A pickle runs code when loaded: convert only files you trust (torch.load with weights_only).

Needs: pip install torch safetensors
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

KEYS = ["encoder.weight", "encoder.bias", "decoder.weight", "bias"]


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ae_pt")
    ap.add_argument("out")
    ap.add_argument("--hook", help="hook name (default: from config.json's trainer.layer)")
    ap.add_argument("--model", help="model name (default: from config.json's trainer.lm_name)")
    a = ap.parse_args()
    src = Path(a.ae_pt)
    sd = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        fail(f"{src}: not a state dict")
    missing = [k for k in KEYS if k not in sd]
    if missing:
        fail(f"{src}: no {', '.join(missing)}: only the standard (ReLU) AutoEncoder is supported "
             f"(it holds {', '.join(sd)})")
    enc_w, enc_b = sd["encoder.weight"].float(), sd["encoder.bias"].float()
    dec_w, bias = sd["decoder.weight"].float(), sd["bias"].float()
    d_sae, d_in = enc_w.shape
    if dec_w.shape != (d_in, d_sae) or enc_b.shape != (d_sae,) or bias.shape != (d_in,):
        fail(f"{src}: shapes do not fit a standard AutoEncoder: encoder {tuple(enc_w.shape)}, "
             f"decoder {tuple(dec_w.shape)}, bias {tuple(bias.shape)}")
    cfg_path = src.parent / "config.json"
    trainer = json.loads(cfg_path.read_text()).get("trainer", {}) if cfg_path.exists() else {}
    buffer = json.loads(cfg_path.read_text()).get("buffer", {}) if cfg_path.exists() else {}
    layer = trainer.get("layer")
    hook = a.hook or (f"blocks.{layer}.hook_resid_post" if layer is not None else None)
    if hook is None:
        fail(f"{src}: no config.json beside it naming the layer; pass --hook")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({
        "W_enc": enc_w.T.contiguous(),
        "b_enc": enc_b.contiguous(),
        "W_dec": dec_w.T.contiguous(),
        "b_dec": bias.contiguous(),
    }, out / "sae_weights.safetensors")
    cfg = {
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": a.model or trainer.get("lm_name", "unknown"),
            "hook_name": hook,
            "hook_head_index": None,
            "context_size": buffer.get("ctx_len", 128),
            "prepend_bos": True,
            "dataset_path": "",
            "sae_lens_training_version": None,
            "converted_from": f"dictionary_learning {src}",
        },
    }
    (out / "cfg.json").write_text(json.dumps(cfg, indent=2))
    print(f"{src} -> {out}: standard SAE, d_in {d_in}, d_sae {d_sae}, hook {hook}")


if __name__ == "__main__":
    main()
