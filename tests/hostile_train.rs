//! Hostile input for the training side: sizes that cannot fit, a diverging run, zero / negative /
//! absurd numeric flags of every command, and the quick start with default settings.

mod common;

use std::path::Path;

use common::{json, ok, p, unravel};

use unravel::synth::planted::PlantedSpec;
use unravel::synth::write_planted;

/// 48 planted features in 24 dims, 4 shards.
fn planted(dir: &Path, tokens: u64) {
    let mut spec = PlantedSpec::new(48, 24, 0.05, tokens, 7);
    spec.shard_tokens = (tokens / 4) as usize;
    write_planted(&spec, dir).unwrap();
}

/// One `error: ` line on stderr, the last one (progress notes may come before it), holding
/// every part.
fn one_error_line(stderr: &str, parts: &[&str]) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some(errors[0]),
        "{stderr}"
    );
    for part in parts {
        assert!(errors[0].contains(part), "`{part}` not in: {stderr}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn impossible_sizes_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 4096);
    // 24 → 1e8 features at batch 4096 needs terabytes: refused with the bytes, no folder made.
    let run = tmp.path().join("run");
    let r = unravel(
        &[
            "train",
            "--acts",
            &p(&acts),
            "--d-sae",
            "100000000",
            "--out",
            &p(&run),
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    one_error_line(
        &r.stderr,
        &[
            "24 → 100000000 features",
            "needs about 5.1 TB of memory (5057213370016 bytes)",
            "is available",
            "lower --d-sae",
        ],
    );
    assert!(!run.exists(), "the run folder was created");

    // synth: features × dims.
    let out = tmp.path().join("synth");
    let r = unravel(
        &[
            "synth",
            "--features",
            "1000000000",
            "--dims",
            "100000",
            "--out",
            &p(&out),
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    one_error_line(
        &r.stderr,
        &["--features 1000000000 × --dims 100000", "needs about"],
    );
    assert!(!out.exists());
    // synth --neurons: a shard of neurons.
    let r = unravel(
        &[
            "synth",
            "--neurons",
            "1000000000",
            "--shard-tokens",
            "1000000",
            "--out",
            &p(&out),
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    one_error_line(&r.stderr, &["--neurons 1000000000", "needs about"]);
    assert!(!out.exists());
}

#[test]
fn a_diverging_run_fails_and_exports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 16384);
    let run = tmp.path().join("run");
    let r = unravel(
        &[
            "train",
            "--acts",
            &p(&acts),
            "--out",
            &p(&run),
            "--d-sae",
            "96",
            "--tokens",
            "8192",
            "--batch",
            "256",
            "--lr",
            "1e6",
            "--device",
            "cpu",
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    one_error_line(&r.stderr, &["training diverged", "lower --lr"]);
    // No export that looks fine; the reason kept where eval / verify / run look; checkpoints kept.
    for f in [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    ] {
        assert!(!run.join(f).exists(), "{f} was written");
    }
    let reason = std::fs::read_to_string(run.join("DIVERGED")).unwrap();
    let info = json(&run.join("run.json"));
    assert_eq!(info["diverged"].as_str(), Some(reason.trim()));
    assert_eq!(info["complete"], false);
    assert!(run.join("checkpoints/latest").is_file());
    for args in [
        vec!["eval", "--sae", &p(&run), "--acts", &p(&acts)],
        vec!["verify", "--truth", &p(&acts), "--sae", &p(&run)],
    ] {
        let r = unravel(&args, &[]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        one_error_line(&r.stderr, &["training diverged", "exported no SAE"]);
    }
}

#[test]
fn zero_negative_and_absurd_numeric_flags_get_a_clear_error() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["train", "--lr", "-0.001"],
            "--lr",
            "must be a positive number",
        ),
        (&["train", "--lr", "0"], "--lr", "must be a positive number"),
        (&["train", "--lr", "nan"], "--lr", "must be a finite number"),
        (&["train", "--d-sae", "0"], "--d-sae", "must be at least 1"),
        (&["train", "--tokens", "-5"], "--tokens", "at least 1"),
        (&["train", "--batch", "0"], "--batch", "must be at least 1"),
        (&["train", "--expansion", "-2"], "--expansion", "positive"),
        (
            &["train", "--l1-coefficient", "-1"],
            "--l1-coefficient",
            ">= 0",
        ),
        (
            &["train", "--eval-tokens", "0"],
            "--eval-tokens",
            "at least 1",
        ),
        (&["train", "--log-every", "0"], "--log-every", "at least 1"),
        (
            &["train", "--eval-shards", "-1"],
            "--eval-shards",
            "at least 0",
        ),
        (
            &["extract", "--batch", "0"],
            "--batch",
            "must be at least 1",
        ),
        (
            &["extract", "--shard-tokens", "0"],
            "--shard-tokens",
            "at least 1",
        ),
        (&["extract", "--ctx", "0"], "--ctx", "at least 1"),
        (
            &["extract", "--max-tokens", "0"],
            "--max-tokens",
            "at least 1",
        ),
        (&["synth", "--features", "0"], "--features", "at least 1"),
        (&["synth", "--dims", "0"], "--dims", "at least 1"),
        (&["synth", "--tokens", "0"], "--tokens", "at least 1"),
        (&["synth", "--density", "0"], "--density", "(0, 1]"),
        (&["synth", "--density", "1.5"], "--density", "(0, 1]"),
        (&["synth", "--noise", "-1"], "--noise", ">= 0"),
        (
            &["synth", "--shard-tokens", "0"],
            "--shard-tokens",
            "at least 1",
        ),
        (&["synth", "--neurons", "0"], "--neurons", "at least 1"),
        (&["synth", "--miss", "2"], "--miss", "[0, 1]"),
        (&["plant", "--features", "0"], "--features", "at least 1"),
        (&["plant", "--magnitude", "-0.5"], "--magnitude", "positive"),
        (&["eval", "--contexts", "0"], "--contexts", "at least 1"),
        (
            &["eval", "--eval-tokens", "0"],
            "--eval-tokens",
            "at least 1",
        ),
        (&["verify", "--min-mmcs", "2"], "--min-mmcs", "[0, 1]"),
        (&["verify", "--threshold", "0"], "--threshold", "(0, 1]"),
        (&["audit", "--top-k", "0"], "--top-k", "at least 1"),
        (
            &["audit", "--min-support", "0"],
            "--min-support",
            "at least 1",
        ),
        (&["audit", "--threshold", "-1"], "--threshold", ">= 0"),
        (
            &["analyze", "--rank-threshold", "1.5"],
            "--rank-threshold",
            "between 0 and 1",
        ),
        (
            &["analyze", "--heatmap-dims", "0"],
            "--heatmap-dims",
            "at least 1",
        ),
        (&["toy", "--steps", "0"], "--steps", "at least 1"),
        (&["toy", "--lr", "-1"], "--lr", "positive"),
        (&["trace", "--batch", "0"], "--batch", "at least 1"),
        (&["inspect", "x", "--rows", "-1"], "--rows", "at least 0"),
    ];
    for (args, flag, message) in cases {
        let r = unravel(args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: invalid value")
                && first.contains(&format!("'{flag}"))
                && first.contains(message),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("unexpected argument"), "{args:?}");
    }
}

/// The README's quick start, scaled down (128 features in 64 dims, the same 0.2 of the dims
/// active per token, 1M training tokens over a 250k-token dataset), with default settings.
#[test]
fn a_small_quick_start_passes_with_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("synth"), tmp.path().join("run"));
    ok(&[
        "synth",
        "--features",
        "128",
        "--dims",
        "64",
        "--density",
        "0.1",
        "--tokens",
        "250000",
        "--shard-tokens",
        "16384",
        "--out",
        &p(&data),
    ]);
    let r = ok(&[
        "train",
        "--acts",
        &p(&data),
        "--d-sae",
        "256",
        "--tokens",
        "1000000",
        "--out",
        &p(&run),
    ]);
    // The split is said before training: training rows and the held-out share.
    assert!(
        r.stderr.contains("training set: 229376 rows in 14 shards; held out for evaluation: 20672 rows in 2 shards (8.3% of the data)"),
        "{}",
        r.stderr
    );
    let r = ok(&[
        "verify",
        "--truth",
        &p(&data),
        "--sae",
        &p(&run),
        "--min-mmcs",
        "0.98",
        "--min-recovered",
        "0.95",
    ]);
    assert!(r.stdout.contains("PASS"), "{}", r.stdout);
}
