//! `unravel import`: every input format (small files written here) becomes a dataset whose rows
//! read back exactly, with statistics and checksums; bad input gives one clear line and leaves
//! no folder behind.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder};
use arrow_array::ArrayRef;
use common::import_files::*;
use common::{ok, p, unravel};
use unravel::store::{Dataset, StorageDtype};

/// Every value of `hook`, row-major, in dataset order; and the token ids.
fn read_back(dir: &Path, hook: &str) -> (Vec<f32>, Vec<u32>) {
    use arrow_array::{Array, UInt32Array};
    let ds = Dataset::open(dir).unwrap();
    ds.verify().unwrap();
    let h = ds.hook(hook).unwrap().clone();
    let (mut values, mut ids) = (vec![], vec![]);
    for i in 0..ds.shard_count() {
        let r = ds.shard_reader(i).unwrap();
        for g in 0..r.row_groups().len() {
            values.extend(r.read_hook(&h, g, true).unwrap().values);
            for b in r.read_columns(g, &["token_id"]).unwrap() {
                let c = b.column(0).as_any().downcast_ref::<UInt32Array>().unwrap();
                ids.extend(c.values().iter().copied());
            }
        }
    }
    (values, ids)
}

fn dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    (t, out)
}

/// Refused with one line naming `file` and containing `needle`; no dataset left behind.
fn refused(args: &[&str], out: &Path, file: &str, needle: &str) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    let o = p(out);
    all.extend_from_slice(&["--out", &o]);
    let r = unravel(&all, &[]);
    assert_ne!(r.code, 0, "{args:?} succeeded");
    let err = r.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(file) && err.contains(needle),
        "{args:?}: {err}"
    );
    assert!(!out.exists(), "{args:?} left {}", out.display());
}

#[test]
fn npy_2d_and_3d_import_exactly() {
    let (t, out) = dir();
    let npy = t.path().join("acts.npy");
    write_npy(&npy, "<f4", &[100, 16], &f32_bytes(&values(100, 16)));
    ok(&[
        "import",
        &p(&npy),
        "--shard-tokens",
        "30",
        "--out",
        &p(&out),
    ]);
    let ds = Dataset::open(&out).unwrap();
    let m = ds.manifest();
    assert_eq!((m.totals.rows, m.ctx, ds.shard_count()), (100, 1, 4));
    let h = &m.hooks[0];
    assert_eq!(
        (h.name.as_str(), h.d, h.dtype),
        ("acts", 16, StorageDtype::F32)
    );
    assert_eq!(m.stats["acts"].count, 100);
    let mean0: f64 = (0..100).map(|r| value(r, 0) as f64).sum::<f64>() / 100.0;
    assert!((m.stats["acts"].mean[0] - mean0).abs() < 1e-6);
    assert_eq!(read_back(&out, "acts").0, values(100, 16));

    // [contexts, ctx, d] in f16: 5 contexts of 8 rows, stored as f16.
    let out3 = t.path().join("out3");
    let npy3 = t.path().join("acts3.npy");
    let v = values(40, 4);
    let f16: Vec<u8> = v
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    write_npy(&npy3, "<f2", &[5, 8, 4], &f16);
    ok(&[
        "import",
        &p(&npy3),
        "--hook",
        "blocks.0.hook_resid_post",
        "--out",
        &p(&out3),
    ]);
    let ds = Dataset::open(&out3).unwrap();
    assert_eq!((ds.manifest().ctx, ds.manifest().totals.contexts), (8, 5));
    assert_eq!(ds.manifest().hooks[0].dtype, StorageDtype::F16);
    let back = read_back(&out3, "blocks.0.hook_resid_post").0;
    let want: Vec<f32> = v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect();
    assert_eq!(back, want);
}

#[test]
fn npz_and_safetensors_pick_the_named_array() {
    let (t, out) = dir();
    let npz = t.path().join("acts.npz");
    let a = npy_bytes("<f4", &[20, 8], &f32_bytes(&values(20, 8)));
    let b = npy_bytes("<f4", &[3], &f32_bytes(&[1.0, 2.0, 3.0]));
    write_npz(&npz, &[("resid", a), ("other", b)]);
    refused(&[&p(&npz)], &out, "acts.npz", "choose one with --column");
    ok(&["import", &p(&npz), "--column", "resid", "--out", &p(&out)]);
    assert_eq!(read_back(&out, "resid").0, values(20, 8));

    let st = t.path().join("acts.safetensors");
    write_safetensors(
        &st,
        &[
            ("blocks.1.hook_resid_post", vec![30, 8], values(30, 8)),
            ("bias", vec![8], vec![0.0; 8]),
        ],
    );
    let out2 = t.path().join("out2");
    // The only 2-D tensor is taken without --column, and names the hook.
    ok(&["import", &p(&st), "--dtype", "bf16", "--out", &p(&out2)]);
    let ds = Dataset::open(&out2).unwrap();
    assert_eq!(ds.manifest().hooks[0].dtype, StorageDtype::Bf16);
    let back = read_back(&out2, "blocks.1.hook_resid_post").0;
    let want: Vec<f32> = values(30, 8)
        .iter()
        .map(|x| half::bf16::from_f32(*x).to_f32())
        .collect();
    assert_eq!(back, want);
    refused(
        &[&p(&st), "--column", "nope"],
        &t.path().join("o3"),
        "acts.safetensors",
        "--column nope: no such tensor",
    );
}

#[test]
fn parquet_files_and_folders_with_fixed_or_variable_lists() {
    let (t, out) = dir();
    let folder = t.path().join("pq");
    std::fs::create_dir(&folder).unwrap();
    let rows: Vec<Vec<f32>> = (0..50)
        .map(|r| (0..12).map(|j| value(r, j)).collect())
        .collect();
    // Two files (natural order: part-2 before part-10), a fixed and a variable list.
    write_parquet(
        &folder.join("part-2.parquet"),
        vec![("acts", float_list(&rows[..20], Some(12)))],
    );
    write_parquet(
        &folder.join("part-10.parquet"),
        vec![("acts", float_list(&rows[20..], None))],
    );
    std::fs::write(folder.join("_SUCCESS"), "").unwrap();
    ok(&["import", &p(&folder), "--out", &p(&out)]);
    assert_eq!(read_back(&out, "acts").0, values(50, 12));

    // f64 lists with token ids; other columns are ignored.
    let mut b = ListBuilder::new(Float64Builder::new());
    for r in 0..10 {
        b.values()
            .append_slice(&(0..4).map(|j| value(r, j) as f64).collect::<Vec<_>>());
        b.append(true);
    }
    let mut ids = Int64Builder::new();
    (0..10).for_each(|i| ids.append_value(100 + i));
    let f64_file = t.path().join("f64.parquet");
    write_parquet(
        &f64_file,
        vec![
            ("x", Arc::new(b.finish()) as ArrayRef),
            ("token_ids", Arc::new(ids.finish()) as ArrayRef),
            (
                "text",
                Arc::new(arrow_array::StringArray::from(vec!["a"; 10])) as ArrayRef,
            ),
        ],
    );
    let out2 = t.path().join("out2");
    ok(&[
        "import",
        &p(&f64_file),
        "--column",
        "x",
        "--hook",
        "h",
        "--out",
        &p(&out2),
    ]);
    let (v, ids) = read_back(&out2, "h");
    assert_eq!(v, values(10, 4));
    assert_eq!(ids, (100..110).collect::<Vec<u32>>());
}

#[test]
fn a_saelens_activation_cache_imports_with_its_contexts_and_token_ids() {
    let (t, out) = dir();
    let cache = t.path().join("cache");
    write_saelens_cache(&cache, "blocks.0.hook_resid_post", &[3, 2], 6, 8);
    ok(&["import", &p(&cache), "--out", &p(&out)]);
    let ds = Dataset::open(&out).unwrap();
    let m = ds.manifest();
    assert_eq!((m.ctx, m.totals.contexts, m.totals.rows), (6, 5, 30));
    let (v, ids) = read_back(&out, "blocks.0.hook_resid_post");
    assert_eq!(v, values(30, 8));
    assert_eq!(ids, (0..30).collect::<Vec<u32>>());
    // Every command reads it: a short training run.
    let run = t.path().join("run");
    ok(&[
        "train",
        "--acts",
        &p(&out),
        "--d-sae",
        "16",
        "--tokens",
        "3000",
        "--batch",
        "10",
        "--out",
        &p(&run),
    ]);
    assert!(run.join("sae_weights.safetensors").is_file());
}

#[test]
fn bad_inputs_are_refused_in_one_line() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let f = |n: &str| t.path().join(n);

    // A missing column, and a column that is not a float list.
    let rows: Vec<Vec<f32>> = (0..4).map(|r| vec![value(r, 0); 3]).collect();
    let mut ints = ListBuilder::new(Int64Builder::new());
    for _ in 0..4 {
        ints.values().append_slice(&[1, 2, 3]);
        ints.append(true);
    }
    write_parquet(
        &f("a.parquet"),
        vec![
            ("acts", float_list(&rows, Some(3))),
            ("ints", Arc::new(ints.finish()) as ArrayRef),
        ],
    );
    let a = p(&f("a.parquet"));
    refused(
        &[&a, "--column", "nope"],
        &out,
        "a.parquet",
        "--column nope: no such column",
    );
    refused(
        &[&a, "--column", "ints"],
        &out,
        "a.parquet",
        "import takes lists of floats",
    );

    // Ragged rows.
    let ragged = vec![vec![0.1; 3], vec![0.1; 3], vec![0.1; 2]];
    write_parquet(&f("r.parquet"), vec![("acts", float_list(&ragged, None))]);
    refused(
        &[&p(&f("r.parquet"))],
        &out,
        "r.parquet",
        "record 2: holds 2 values, expected 3",
    );

    // NaN, in parquet and in a .npy.
    let nan = vec![vec![0.1; 3], vec![0.1, f32::NAN, 0.1]];
    write_parquet(&f("n.parquet"), vec![("acts", float_list(&nan, None))]);
    refused(&[&p(&f("n.parquet"))], &out, "n.parquet", "value 1 is NaN");
    let mut v = values(6, 4);
    v[13] = f32::NAN;
    write_npy(&f("n.npy"), "<f4", &[6, 4], &f32_bytes(&v));
    refused(&[&p(&f("n.npy"))], &out, "n.npy", "row 3 holds NaN");

    // Non-float arrays, sizes that differ across files, truncated files.
    write_npy(&f("i.npy"), "<i8", &[2, 2], &[0u8; 32]);
    refused(
        &[&p(&f("i.npy"))],
        &out,
        "i.npy",
        "dtype <i8 is not a little-endian float",
    );
    write_npy(&f("d4.npy"), "<f4", &[2, 4], &f32_bytes(&values(2, 4)));
    write_npy(&f("d5.npy"), "<f4", &[2, 5], &f32_bytes(&values(2, 5)));
    refused(
        &[&p(&f("d4.npy")), &p(&f("d5.npy"))],
        &out,
        "d5.npy",
        "acts (d=5), ctx 1, but",
    );
    write_npy(&f("t.npy"), "<f4", &[9, 4], &f32_bytes(&values(2, 4)));
    refused(&[&p(&f("t.npy"))], &out, "t.npy", "truncated");
    std::fs::write(f("x.csv"), "1,2").unwrap();
    refused(&[&p(&f("x.csv"))], &out, "x.csv", "unknown extension");

    // An output that already holds a dataset is left alone.
    ok(&["import", &p(&f("d4.npy")), "--out", &p(&out)]);
    let r = unravel(&["import", &p(&f("d4.npy")), "--out", &p(&out)], &[]);
    assert!(
        r.code != 0 && r.stderr.contains("already exists"),
        "{}",
        r.stderr
    );
    assert!(Dataset::open(&out).is_ok());
}
