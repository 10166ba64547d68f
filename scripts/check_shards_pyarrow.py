#!/usr/bin/env python3
"""Check an unravel activation dataset with pyarrow and pandas (what external users will do).

Usage: python scripts/check_shards_pyarrow.py DATASET_DIR

Opens every shard listed in DATASET_DIR/__unravel__/manifest.json (legacy: DATASET_DIR/manifest.json)
with pyarrow and pandas, prints each schema and row count, and checks them against the manifest: row, context and special-row
counts, the columns and their order, hook columns of type fixed_size_list<halffloat|float>[d]
(bf16 hooks: fixed_size_list<uint16>[d] with field metadata unravel.dtype=bfloat16), and that a
bf16 column decodes to float32 with numpy. Exits 1 on the first mismatch.

Needs: pip install pyarrow pandas
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ITEM_TYPES = {"f16": pa.float16(), "f32": pa.float32(), "bf16": pa.uint16()}
META_NAMES = {"f16": "float16", "f32": "float32", "bf16": "bfloat16"}
FIXED = ["context_id", "position", "token_id", "token", "special"]


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check_hook(shard, schema, hook):
    field = schema.field(hook["name"])
    t = field.type
    want = pa.list_(pa.field("item", ITEM_TYPES[hook["dtype"]], nullable=False), hook["d"])
    if not pa.types.is_fixed_size_list(t) or t.list_size != hook["d"] or t.value_type != want.value_type:
        fail(f"{shard}: column {hook['name']} is {t}, manifest says {want}")
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    if meta.get("unravel.dtype") != META_NAMES[hook["dtype"]]:
        fail(f"{shard}: column {hook['name']} has metadata {meta}, expected unravel.dtype={META_NAMES[hook['dtype']]}")


def bf16_to_f32(values_u16):
    return (values_u16.astype(np.uint32) << 16).view(np.float32)


def check_duckdb(root, manifest):
    """If duckdb is installed, count the rows through it and read one row of every hook."""
    try:
        import duckdb
    except ImportError:
        print("duckdb not installed: skipped (pip install duckdb)")
        return
    files = [str(root / s["file"]) for s in manifest["shards"]]
    rows = duckdb.sql(f"select count(*) from read_parquet({files})").fetchall()[0][0]
    if rows != manifest["totals"]["rows"]:
        fail(f"duckdb counts {rows} rows, manifest says {manifest['totals']['rows']}")
    for hook in manifest["hooks"]:
        got = duckdb.sql(f'select "{hook["name"]}" from read_parquet({files}) limit 1').fetchall()[0][0]
        if len(got) != hook["d"]:
            fail(f"duckdb reads {len(got)} values of {hook['name']}, manifest says d={hook['d']}")
    print(f"duckdb {duckdb.__version__}: {rows} rows, every hook column readable")


def main(root):
    path = root / "__unravel__" / "manifest.json"
    manifest = json.loads((path if path.exists() else root / "manifest.json").read_text())
    print(f"{root}: {manifest['format']} v{manifest['format_version']}, model {manifest['model']['id']}, "
          f"{len(manifest['shards'])} shards, totals {manifest['totals']}")
    hooks = manifest["hooks"]
    expected_columns = FIXED + manifest["label_columns"] + [h["name"] for h in hooks]
    totals = {"rows": 0, "contexts": 0, "special_rows": 0}
    for i, info in enumerate(manifest["shards"]):
        path = root / info["file"]
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        if i == 0:
            print("schema (shard 0):")
            print("  " + str(schema).replace("\n", "\n  "))
        if schema.names != expected_columns:
            fail(f"{path}: columns {schema.names}, expected {expected_columns}")
        for hook in hooks:
            check_hook(path, schema, hook)
        table = pq.read_table(path)
        df = table.to_pandas()
        rows, contexts = len(df), df["context_id"].nunique()
        special = int(df["special"].sum())
        print(f"{info['file']}: {rows} rows, {contexts} contexts, {special} special, "
              f"{pf.metadata.num_row_groups} row groups, {info['bytes']} bytes")
        if (rows, contexts, special) != (info["rows"], info["contexts"], info["special_rows"]):
            fail(f"{path}: pandas sees {rows} rows / {contexts} contexts / {special} special, "
                 f"manifest says {info['rows']} / {info['contexts']} / {info['special_rows']}")
        if (df["context_id"].min(), df["context_id"].max()) != (info["first_context_id"], info["last_context_id"]):
            fail(f"{path}: context ids {df['context_id'].min()}..{df['context_id'].max()} differ from the manifest")
        for hook in hooks:
            col = table.column(hook["name"]).combine_chunks()
            flat = col.flatten().to_numpy(zero_copy_only=False)
            if hook["dtype"] == "bf16":
                flat = bf16_to_f32(flat)
            values = flat.astype(np.float32).reshape(rows, hook["d"])
            if not np.isfinite(values).all():
                fail(f"{path}: {hook['name']} holds non-finite values")
        totals["rows"] += rows
        totals["contexts"] += contexts
        totals["special_rows"] += special
    for k, v in totals.items():
        if manifest["totals"][k] != v:
            fail(f"totals.{k}: manifest says {manifest['totals'][k]}, shards hold {v}")
    # Each hook's mean over non-special rows, against the manifest's running statistics (which
    # were taken before rounding to the storage dtype, hence the tolerance).
    for hook in hooks:
        parts = [pq.read_table(root / s["file"], columns=["special", hook["name"]]).to_pandas()
                 for s in manifest["shards"]]
        df = pd.concat(parts)
        kept = np.stack(df.loc[~df["special"], hook["name"]].to_numpy())
        if hook["dtype"] == "bf16":
            kept = bf16_to_f32(kept.astype(np.uint16))
        mean = kept.astype(np.float64).mean(axis=0)
        stored = np.array(manifest["stats"][hook["name"]]["mean"])
        err = float(np.abs(mean - stored).max() / (1 + np.abs(stored).max()))
        print(f"{hook['name']} ({hook['dtype']}): mean over {len(kept)} non-special rows "
              f"matches the manifest to {err:.1e}")
        if err > 1e-2:
            fail(f"{hook['name']}: mean differs from manifest stats by {err}")
    check_duckdb(root, manifest)
    print(f"OK: {len(manifest['shards'])} shards, {totals['rows']} rows checked with pyarrow {pa.__version__}, "
          f"pandas {pd.__version__}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(Path(sys.argv[1]))
