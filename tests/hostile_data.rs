//! Damaged, partial and non-finite datasets: every command that reads one ends with one clear
//! `error:` line naming the shard or folder and a non-zero exit, writes nothing that looks
//! complete, and reads the dataset when told to (`--allow-incomplete`, `--skip-nonfinite`).

mod common;

use std::path::{Path, PathBuf};

use common::{ok, p, unravel, Run};

/// A planted-neurons dataset (hook `neurons`, d = 16, 6 concept label columns, f32) in 4 shards
/// of 1024 rows, and an SAE trained on it: what every reading command can take.
fn clean(tmp: &Path) -> (PathBuf, PathBuf) {
    let acts = tmp.join("clean");
    ok(&[
        "synth",
        "--neurons",
        "16",
        "--concepts",
        "6",
        "--tokens",
        "4096",
        "--shard-tokens",
        "1024",
        "--out",
        &p(&acts),
    ]);
    let sae = tmp.join("sae");
    let r = run(&train(&acts, &sae));
    assert_eq!(r.code, 0, "{}", r.stderr);
    (acts, sae)
}

fn train(acts: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--acts",
        &p(acts),
        "--out",
        &p(out),
        "--d-sae",
        "32",
        "--tokens",
        "4096",
        "--batch",
        "256",
        "--lr",
        "1e-3",
        "--eval-tokens",
        "1024",
        "--device",
        "cpu",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every reading command on `acts`, each writing into its own folder under `out`.
fn commands(acts: &Path, sae: &Path, out: &Path) -> Vec<(&'static str, Vec<String>, PathBuf)> {
    let dir = |name: &str| out.join(name);
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("train", train(acts, &dir("train")), dir("train")),
        (
            "eval",
            s(&[
                "eval",
                "--sae",
                &p(sae),
                "--acts",
                &p(acts),
                "--shards",
                "all",
                "--device",
                "cpu",
                "--json",
                &p(&dir("eval").join("eval.json")),
            ]),
            dir("eval"),
        ),
        (
            "audit",
            s(&["audit", "--acts", &p(acts), "--out", &p(&dir("audit"))]),
            dir("audit"),
        ),
        (
            "analyze",
            // --color-by reads a label column beside the hook: its rows must drop with the hook's.
            s(&[
                "analyze",
                "--acts",
                &p(acts),
                "--color-by",
                "label.c00",
                "--out",
                &p(&dir("analyze")),
            ]),
            dir("analyze"),
        ),
        (
            "plant",
            s(&[
                "plant",
                "--acts",
                &p(acts),
                "--features",
                "4",
                "--out",
                &p(&dir("plant")),
            ]),
            dir("plant"),
        ),
    ]
}

fn run(args: &[String]) -> Run {
    unravel(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

/// The run failed with one `error:` line holding every fragment, said once.
fn failed_with(name: &str, r: &Run, fragments: &[&str]) {
    assert_ne!(r.code, 0, "{name} exited 0:\n{}", r.stdout);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{name}: {}", r.stderr);
    for f in fragments {
        assert!(errors[0].contains(f), "{name}: no `{f}` in: {}", errors[0]);
        assert_eq!(
            errors[0].matches(f).count(),
            1,
            "{name}: `{f}` repeated in: {}",
            errors[0]
        );
    }
}

/// Nothing in `out` that looks like a finished result.
fn nothing_complete(name: &str, out: &Path) {
    for file in [
        "__unravel__/manifest.json",
        "sae_weights.safetensors",
        "cfg.json",
        "audit.json",
        "analysis.json",
        "eval.json",
    ] {
        assert!(
            !out.join(file).exists(),
            "{name} left {} behind",
            out.join(file).display()
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn flipped_bytes_are_caught_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, sae) = clean(tmp.path());
    let acts = tmp.path().join("flipped");
    copy_dir(&clean, &acts);
    // 4 KB of flipped bytes inside a shard; the manifest is untouched.
    let shard = acts.join("shard-00002.parquet");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2 - 2048;
    bytes[mid..mid + 4096].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&shard, &bytes).unwrap();

    for (name, args, out) in commands(&acts, &sae, &tmp.path().join("out")) {
        let r = run(&args);
        failed_with(
            name,
            &r,
            &["shard-00002.parquet", "sha256 mismatch", "re-extract"],
        );
        nothing_complete(name, &out);
    }
    let r = unravel(&["inspect", &p(&acts), "--verify"], &[]);
    failed_with("inspect", &r, &["shard-00002.parquet", "sha256 mismatch"]);
    // The clean copy is still read (the check is per file, not per folder name).
    ok(&[
        "analyze",
        "--acts",
        &p(&clean),
        "--out",
        &p(&tmp.path().join("a")),
    ]);
}

#[test]
fn truncated_shard_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, sae) = clean(tmp.path());
    let acts = tmp.path().join("truncated");
    copy_dir(&clean, &acts);
    let shard = acts.join("shard-00000.parquet");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 3]).unwrap();
    for (name, args, out) in commands(&acts, &sae, &tmp.path().join("out")) {
        let r = run(&args);
        failed_with(name, &r, &["shard-00000.parquet", "sha256 mismatch"]);
        nothing_complete(name, &out);
    }
}

/// Rewrites `shard` with NaN and +Inf in hook `neurons` (rows 5 and 700), as another tool could
/// leave it, and records its new hash so only the values are at fault.
fn poison(acts: &Path, shard: &str) {
    use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
    use std::sync::Arc;
    let path = acts.join(shard);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let col = schema.index_of("neurons").unwrap();
    let mut row0 = 0;
    let mut poisoned = vec![];
    for b in &batches {
        let list = b
            .column(col)
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .unwrap();
        let d = list.value_length() as usize;
        let mut vals = list
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap()
            .values()
            .to_vec();
        for (row, v) in [(5, f32::NAN), (700, f32::INFINITY)] {
            if (row0..row0 + b.num_rows()).contains(&row) {
                vals[(row - row0) * d + 3] = v;
            }
        }
        row0 += b.num_rows();
        let arrow_schema::DataType::FixedSizeList(field, size) = list.data_type().clone() else {
            panic!("not a list")
        };
        let new = FixedSizeListArray::new(field, size, Arc::new(Float32Array::from(vals)), None);
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols[col] = Arc::new(new);
        poisoned.push(RecordBatch::try_new(schema.clone(), cols).unwrap());
    }
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None)
            .unwrap();
    for b in &poisoned {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    common::rerecord_shard(acts, shard);
}

#[test]
fn nonfinite_values_are_refused_unless_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, sae) = clean(tmp.path());
    let acts = tmp.path().join("nan");
    copy_dir(&clean, &acts);
    poison(&acts, "shard-00001.parquet");

    for (name, args, out) in commands(&acts, &sae, &tmp.path().join("strict")) {
        let r = run(&args);
        failed_with(
            name,
            &r,
            &[
                "shard-00001.parquet",
                "hook neurons holds NaN/Inf values",
                "--skip-nonfinite",
            ],
        );
        nothing_complete(name, &out);
    }
    // Every command that suggests --skip-nonfinite accepts it, and drops exactly the 2 rows.
    for (name, mut args, _) in commands(&acts, &sae, &tmp.path().join("skip")) {
        args.push("--skip-nonfinite".into());
        let r = run(&args);
        assert_eq!(r.code, 0, "{name} --skip-nonfinite: {}", r.stderr);
    }
    let analysis = common::json(&tmp.path().join("skip/analyze/analysis.json"));
    let text = analysis.to_string();
    assert!(!text.contains("NaN") && !text.contains("null,"), "{text}");
    assert_eq!(analysis["tokens"].as_u64(), Some(4096 - 2), "analyze");
    let eval = common::json(&tmp.path().join("skip/eval/eval.json"));
    assert_eq!(eval["tokens"].as_u64(), Some(4096 - 2), "{eval}");
}

#[test]
fn incomplete_datasets_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, sae) = clean(tmp.path());
    let acts = tmp.path().join("partial");
    copy_dir(&clean, &acts);
    let path = acts.join("__unravel__/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"complete\": true"));
    std::fs::write(
        &path,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();

    for (name, args, out) in commands(&acts, &sae, &tmp.path().join("strict")) {
        let r = run(&args);
        failed_with(
            name,
            &r,
            &[
                "partial: the dataset is incomplete",
                "run synth again",
                "--allow-incomplete",
            ],
        );
        nothing_complete(name, &out);
    }
    for (name, mut args, _) in commands(&acts, &sae, &tmp.path().join("allowed")) {
        args.push("--allow-incomplete".into());
        let r = run(&args);
        assert_eq!(r.code, 0, "{name} --allow-incomplete: {}", r.stderr);
    }
    // inspect shows it, with what to do.
    let r = ok(&["inspect", &p(&acts)]);
    assert!(
        r.stdout
            .contains("INCOMPLETE: the `unravel synth` that wrote it did not finish"),
        "{}",
        r.stdout
    );
}
