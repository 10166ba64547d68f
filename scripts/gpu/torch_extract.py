#!/usr/bin/env python3
"""The transformers side of the extraction benchmark (run_all.sh stage extract_*).

Runs the same random-weight architecture (from the same config .json) over exactly the contexts our
`unravel extract` wrote (token ids read back from its shards, so both sides see the same tokens and
padding), with the same contexts per forward pass and compute dtype, `output_hidden_states=True`
(embeddings + every layer's output: the same tensors as our hooks
`blocks.0.hook_resid_pre,blocks.*.hook_resid_post`, except that GPT-2's last one has ln_f applied).

Three variants, each timed after one untimed warm-up batch:
  forward   forward passes only (synchronised at the end)
  d2h       + the real tokens' hidden states as f16 copied to host memory (what any writer needs)
  parquet   + written with pyarrow to zstd-1 parquet shards of --shard-tokens rows (columns
            context_id, position, token_id and one fixed_size_list<f16> column per hidden state;
            our shards also hold `token` strings and `special`), synchronously, as a plain script would

    torch_extract.py --acts DIR --config configs/models/gpt2.json --device cuda --dtype bf16 --batch 256 \
        --work /tmp/w --json out.json [--variants forward,d2h,parquet]
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def load_contexts(acts):
    """[n_ctx, ctx] token ids and 0/1 mask of the contexts in our shards, in context_id order."""
    import numpy as np
    import pyarrow.parquet as pq

    manifest = common.load_json(os.path.join(acts, "__unravel__", "manifest.json"))
    ctx = manifest["ctx"]
    cols = {"context_id": [], "position": [], "token_id": []}
    for s in manifest["shards"]:
        t = pq.read_table(os.path.join(acts, s["file"]), columns=list(cols))
        for k in cols:
            cols[k].append(t.column(k).to_numpy())
    cid, pos, tok = (np.concatenate(cols[k]) for k in cols)
    uniq, row = np.unique(cid, return_inverse=True)
    ids = np.zeros((len(uniq), ctx), np.int64)
    mask = np.zeros((len(uniq), ctx), np.int64)
    ids[row, pos] = tok
    mask[row, pos] = 1
    return ids, mask, uniq


def build_model(config_path, device, dtype):
    import torch
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(config_path)
    torch.manual_seed(0)
    model = AutoModel.from_config(cfg)  # the base model: no LM head, like our extraction
    return model.to(device=device, dtype=dtype).eval(), cfg


def run_variant(variant, model, ids, mask, cids, batch, device, work, shard_tokens):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    out_dir = os.path.join(work, f"hf-shards-{variant}")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)
    pending, pending_rows, shard = [], 0, 0
    stats = {"write_s": 0.0, "d2h_s": 0.0, "bytes_written": 0}

    def flush():
        nonlocal pending, pending_rows, shard
        if not pending:
            return
        t0 = time.perf_counter()
        cat = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
        arrays, names = [], []
        for k, v in cat.items():
            if v.ndim == 2:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]))
            else:
                arrays.append(pa.array(v))
            names.append(k)
        path = os.path.join(out_dir, f"shard-{shard:05d}.parquet")
        pq.write_table(pa.Table.from_arrays(arrays, names=names), path, compression="zstd",
                       compression_level=1)
        stats["bytes_written"] += os.path.getsize(path)
        stats["write_s"] += time.perf_counter() - t0
        pending, pending_rows, shard = [], 0, shard + 1

    def one_batch(lo):
        nonlocal pending_rows
        b_ids = torch.from_numpy(ids[lo:lo + batch]).to(device, non_blocking=True)
        b_mask = torch.from_numpy(mask[lo:lo + batch]).to(device, non_blocking=True)
        with torch.inference_mode():
            hs = model(input_ids=b_ids, attention_mask=b_mask, output_hidden_states=True).hidden_states
            if variant == "forward":
                return 0
            real = b_mask.bool()
            t0 = time.perf_counter()
            host = [h[real].to(torch.float16).cpu().numpy() for h in hs]
            stats["d2h_s"] += time.perf_counter() - t0
        rows = host[0].shape[0]
        if variant == "parquet":
            m = mask[lo:lo + batch].astype(bool)
            rec = {"context_id": np.repeat(cids[lo:lo + batch], m.sum(1)).astype(np.uint64),
                   "position": np.nonzero(m)[1].astype(np.uint32),
                   "token_id": ids[lo:lo + batch][m].astype(np.uint32)}
            for i, h in enumerate(host):
                rec[f"hidden_states.{i}"] = h
            pending.append(rec)
            pending_rows += rows
            if pending_rows >= shard_tokens:
                flush()
        return rows

    one_batch(0)  # untimed warm-up: cuBLAS handles, kernels, allocator
    pending.clear()
    pending_rows = 0
    stats.update(write_s=0.0, d2h_s=0.0, bytes_written=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with common.GpuMemSampler() as mem:
        for lo in range(0, len(ids), batch):
            one_batch(lo)
        flush()
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rows = int(mask.sum())
    res = {"seconds": seconds, "rows": rows, "contexts": int(len(ids)), "rows_per_s": rows / seconds,
           **{k: v for k, v in stats.items()}, **mem.result()}
    if device.type == "cuda":
        res["torch_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        res["torch_max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--acts", required=True, help="our extract's output (token ids are read from it)")
    ap.add_argument("--config", required=True, help="the HF config .json our side used with --random-weights")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["f32", "f16", "bf16"])
    ap.add_argument("--batch", type=int, required=True, help="contexts per forward pass (as our --batch)")
    ap.add_argument("--variants", default="forward,d2h,parquet")
    ap.add_argument("--shard-tokens", type=int, default=65536)
    ap.add_argument("--work", required=True)
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import torch

    device = torch.device(a.device)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    res = {"config": a.config, "device": a.device, "dtype": a.dtype, "batch": a.batch, **common.torch_info(),
           "variants": {}}
    t0 = time.perf_counter()
    ids, mask, cids = load_contexts(a.acts)
    res["load_ids_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, cfg = build_model(a.config, device, dtype)
    res["model_setup_s"] = time.perf_counter() - t0
    res["attn_implementation"] = getattr(cfg, "_attn_implementation", None)
    res["ctx"] = int(ids.shape[1])
    import transformers
    res["transformers"] = transformers.__version__
    os.makedirs(a.work, exist_ok=True)
    for v in a.variants.split(","):
        try:
            res["variants"][v] = run_variant(v, model, ids, mask, cids, a.batch, device, a.work, a.shard_tokens)
        except Exception as e:  # noqa: BLE001 - keep the other variants
            res["variants"][v] = {"error": repr(e)}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"{v}: {res['variants'][v]}", file=sys.stderr)
        if a.json:  # after every variant: a timeout keeps the ones done
            common.write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
