#!/usr/bin/env python3
"""zstd level vs compression ratio and speed on real hook values: the f16 bytes of a shard's hook
columns, cut into 1 MiB pages as the writer compresses them (src/store/f16_chunk.rs).

    python3 scripts/bench_zstd_levels.py DATASET_DIR [--levels=-1,1,2,3] [--mb 40]

DATASET_DIR is an `unravel extract --store-dtype f16` output. Needs pyarrow; prints
one line per level: compressed/raw bytes and single-thread compression MB/s (best of 3).
"""
import argparse
import glob
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--levels", default="-1,1,2,3", help="comma-separated; write --levels=-1,1")
    ap.add_argument("--mb", type=int, default=40, help="MiB of hook values to compress")
    a = ap.parse_args()
    shards = sorted(glob.glob(os.path.join(a.dataset, "*.parquet")))
    if not shards:
        raise SystemExit(f"{a.dataset}: no .parquet shards; run unravel extract first")
    # Hook columns are the fixed-size lists; only f16 ones are written as these pages.
    schema = pq.read_schema(shards[0])
    hooks = [f.name for f in schema
             if pa.types.is_fixed_size_list(f.type) and f.type.value_type == pa.float16()]
    if not hooks:
        raise SystemExit(f"{shards[0]}: no f16 hook columns; extract with --store-dtype f16")
    table = pq.read_table(shards[0], columns=hooks)
    raw = b"".join(
        table.column(c).combine_chunks().flatten().to_numpy().tobytes() for c in hooks
    )[: a.mb << 20]
    pages = [raw[i : i + (1 << 20)] for i in range(0, len(raw), 1 << 20)]
    print(f"{len(raw) / 2**20:.0f} MiB of f16 values from {len(hooks)} hook columns of {shards[0]}")
    for level in [int(x) for x in a.levels.split(",")]:
        codec = pa.Codec("zstd", compression_level=level)
        best, size = float("inf"), 0
        for _ in range(3):
            t0 = time.perf_counter()
            size = sum(len(codec.compress(p, asbytes=True)) for p in pages)
            best = min(best, time.perf_counter() - t0)
        print(f"level {level:>2}: {size / len(raw):.3f} of raw, {len(raw) / best / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main()
