//! End-to-end `unravel extract`: a killed run resumes to exactly the rows of an uninterrupted
//! run; `--part i/N` runs merge into the same dataset; bad input gives one clear line.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::{Array, UInt32Array, UInt64Array};
use common::fixtures;
use unravel::store::Dataset;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unravel"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A JSONL corpus of `docs` documents with a `sentiment` label, deterministic.
fn write_corpus(dir: &Path, docs: usize) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "ran", "fast", "42", "apples", "red", "blue",
        "Paris", "Tokyo", "loved", "film", "sad", "happy", "code", "return",
    ];
    let mut s = String::new();
    let mut x: u64 = 12345;
    for i in 0..docs {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = 5 + (x >> 33) as usize % 50;
        let text: Vec<&str> = (0..n)
            .map(|j| words[(j * 7 + i * 3 + (x >> 40) as usize) % words.len()])
            .collect();
        let label = if i % 3 == 0 { "neg" } else { "pos" };
        s.push_str(&format!(
            "{{\"text\": \"{}\", \"sentiment\": \"{label}\"}}\n",
            text.join(" ")
        ));
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, s).unwrap();
    path
}

fn extract_args<'a>(corpus: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "extract",
        "--model",
        "tests/fixtures/tiny-gpt2",
        "--corpus",
        corpus,
        "--label-field",
        "sentiment",
        "--hooks",
        "blocks.*.hook_resid_post,blocks.1.mlp.hook_post",
        "--ctx",
        "32",
        "--batch",
        "4",
        "--shard-tokens",
        "1024",
        "--device",
        "cpu",
        "--out",
        out,
    ]
}

/// Every row of a dataset keyed by (context_id, position): token id and the f16 bits of one hook.
fn all_rows(dir: &Path) -> BTreeMap<(u64, u32), (u32, Vec<f32>)> {
    let ds = Dataset::open(dir).unwrap();
    ds.verify().unwrap();
    let hook = ds.hook("blocks.1.mlp.hook_post").unwrap().clone();
    let mut rows = BTreeMap::new();
    for i in 0..ds.shard_count() {
        let r = ds.shard_reader(i).unwrap();
        for g in 0..r.row_groups().len() {
            let batches = r
                .read_columns(g, &["context_id", "position", "token_id"])
                .unwrap();
            let values = r.read_hook(&hook, g, true).unwrap();
            let mut k = 0;
            for b in batches {
                let c = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
                let p = b.column(1).as_any().downcast_ref::<UInt32Array>().unwrap();
                let t = b.column(2).as_any().downcast_ref::<UInt32Array>().unwrap();
                for j in 0..b.num_rows() {
                    let v = values.values[k * hook.d..(k + 1) * hook.d].to_vec();
                    assert!(
                        rows.insert((c.value(j), p.value(j)), (t.value(j), v))
                            .is_none(),
                        "duplicate row"
                    );
                    k += 1;
                }
            }
        }
    }
    rows
}

#[test]
fn killed_run_resumes_to_exactly_the_uninterrupted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 1500);
    let corpus = corpus.to_str().unwrap();
    let whole = dir.path().join("whole");
    let killed = dir.path().join("killed");

    let ok = bin()
        .args(extract_args(corpus, whole.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Start again and kill -9 once a few shards are on disk.
    let mut child = bin()
        .args(extract_args(corpus, killed.to_str().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !killed.join("shard-00003.parquet").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no shard appeared");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let manifest = std::fs::read_to_string(killed.join("__unravel__/manifest.json")).unwrap();
    assert!(
        manifest.contains("\"complete\": false"),
        "the run was killed before finishing"
    );

    // The same command without --resume refuses to overwrite; with --resume it finishes.
    let again = bin()
        .args(extract_args(corpus, killed.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let mut args = extract_args(corpus, killed.to_str().unwrap());
    args.push("--resume");
    let resumed = bin().args(args).output().unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );

    let (a, b) = (all_rows(&whole), all_rows(&killed));
    assert!(a.len() > 20_000, "a real amount of data: {}", a.len());
    assert_eq!(a.len(), b.len(), "no token lost, none duplicated");
    assert!(a == b, "resumed rows differ from the uninterrupted run");
    let leftovers: Vec<_> = std::fs::read_dir(&killed)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temp files left");
}

#[test]
fn parts_merge_into_the_whole_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 300);
    let corpus = corpus.to_str().unwrap();
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    let ok = bin()
        .args(extract_args(corpus, whole.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for p in ["1/2", "2/2"] {
        let mut args = extract_args(corpus, parts.to_str().unwrap());
        args.extend(["--part", p]);
        let out = bin().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "part {p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let merged = bin()
        .args(["merge-manifests", parts.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let (a, b) = (all_rows(&whole), all_rows(&parts));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "merged parts differ from the whole run");
}

#[test]
fn distilbert_contexts_are_cls_sep_and_inspect_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 50);
    let out = dir.path().join("acts");
    let r = bin()
        .args([
            "extract",
            "--model",
            fixtures().join("tiny-distilbert").to_str().unwrap(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--hooks",
            "blocks.0.mlp.hook_post",
            "--ctx",
            "16",
            "--max-tokens",
            "800",
            "--store-dtype",
            "f32",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let ds = Dataset::open(&out).unwrap();
    let m = ds.manifest();
    assert_eq!(m.totals.rows, 800, "--max-tokens 800 = 50 contexts of 16");
    assert!(m.complete);
    let rows = {
        let r = ds.shard_reader(0).unwrap();
        let b = &r.read_columns(0, &["token_id"]).unwrap()[0];
        b.column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .unwrap()
            .values()
            .to_vec()
    };
    assert_eq!((rows[0], rows[15]), (2, 3), "[CLS] ... [SEP]");
    let inspect = bin()
        .args(["inspect", out.to_str().unwrap(), "--verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success());
    assert!(
        text.contains("blocks.0.mlp.hook_post")
            && text.contains("d=128")
            && text.contains("verified"),
        "{text}"
    );
}

#[test]
fn bad_extract_input_gives_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 5);
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "{\"text\": \"\"}\n{\"text\": \"  \"}\n").unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"ok\"}\nnot json\n").unwrap();
    let out = dir.path().join("o");
    let out = out.to_str().unwrap();
    let c = corpus.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--corpus", empty.to_str().unwrap(), "--ctx", "32"],
            "no tokens",
        ),
        (
            vec!["--corpus", bad.to_str().unwrap(), "--ctx", "32"],
            "line 2",
        ),
        (
            vec!["--corpus", "/no/such/corpus.jsonl", "--ctx", "32"],
            "/no/such/corpus.jsonl",
        ),
        (vec!["--corpus", c, "--ctx", "1000"], "--ctx"),
        (
            vec!["--corpus", c, "--ctx", "32", "--store-dtype", "f64"],
            "--store-dtype",
        ),
        (
            vec!["--corpus", c, "--ctx", "32", "--part", "3/2"],
            "--part",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "extract",
            "--model",
            "tests/fixtures/tiny-gpt2",
            "--hooks",
            "hook_embed",
            "--out",
            out,
        ];
        args.extend(extra.iter().copied());
        let r = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{extra:?} should fail");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: `{needle}` not in {err}");
    }
}

#[test]
fn resume_with_other_settings_is_refused_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 40);
    let corpus = corpus.to_str().unwrap();
    let out = dir.path().join("acts");
    let out = out.to_str().unwrap();
    let first = bin().args(extract_args(corpus, out)).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut args = extract_args(corpus, out);
    args[8] = "blocks.0.hook_resid_post"; // --hooks value
    args.push("--resume");
    let r = bin().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("hooks") && err.contains("blocks.1.mlp.hook_post"),
        "{err}"
    );
    // Resuming a complete dataset with the same settings is a no-op that succeeds.
    let mut args = extract_args(corpus, out);
    args.push("--resume");
    let r = bin().args(&args).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("extracted 0 text tokens this run"));
}

#[test]
fn a_dataset_written_before_the_metadata_folder_still_reads_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 200);
    let corpus = corpus.to_str().unwrap();
    let whole = dir.path().join("whole");
    let old = dir.path().join("old");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = extract_args(corpus, out.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = bin().args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&whole, &[]);
    run(&old, &["--max-tokens", "1500"]);
    // The top level holds the shards and the metadata folder, nothing else: it reads as one table.
    let mut top: Vec<String> = std::fs::read_dir(&whole)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("shard-") && n.ends_with(".parquet")))
        .collect();
    top.sort();
    assert_eq!(top, ["__unravel__"]);

    // What a run written before `__unravel__/` left: `manifest.json` at the top level, here of
    // an unfinished run.
    let meta = old.join("__unravel__");
    let (new_name, old_name) = (meta.join("manifest.json"), old.join("manifest.json"));
    std::fs::rename(&new_name, &old_name).unwrap();
    std::fs::remove_dir(&meta).unwrap();
    let partial = Dataset::open(&old).unwrap().manifest().totals.tokens;
    let full = Dataset::open(&whole).unwrap().manifest().totals.tokens;
    assert!(partial > 0 && partial < full, "{partial} of {full} tokens");
    let text = std::fs::read_to_string(&old_name).unwrap();
    std::fs::write(
        &old_name,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();

    run(&old, &["--resume"]);
    assert!(
        new_name.is_file() && !old_name.exists(),
        "moved into __unravel__/"
    );
    assert!(all_rows(&whole) == all_rows(&old), "resumed rows differ");
}
