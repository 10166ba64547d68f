//! End-to-end tests of the `unravel` binary: `trace` output against the Hugging Face reference,
//! and bad input giving one clear line and a non-zero exit (never a panic).

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use common::*;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn unravel(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_unravel"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run unravel");
    let r = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    r
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// Runs `trace` and fails with its stderr if it does not succeed.
fn trace_ok(args: &[&str]) -> std::collections::HashMap<String, Tensor> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acts.safetensors");
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--device", "cpu", "--out", out.to_str().unwrap()]);
    let r = unravel(&all);
    assert!(r.ok, "trace failed: {}", r.stderr);
    assert!(r.stdout.contains("traced"), "{}", r.stdout);
    assert!(!Path::new(&format!("{}.tmp", out.display())).exists());
    candle_core::safetensors::load(&out, &Device::Cpu).unwrap()
}

/// Concatenates the real-token rows of a reference `[b, t, ...]` tensor into `[N, ...]`.
fn real_rows(t: &Tensor, mask: &[Vec<u8>]) -> Tensor {
    let rows: Vec<Tensor> = mask
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let n = m.iter().filter(|&&x| x == 1).count();
            t.get(i).unwrap().narrow(0, 0, n).unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check_against_reference(
    name: &str,
    out: &std::collections::HashMap<String, Tensor>,
    logits: bool,
) {
    let r = reference(name);
    let (ids, mask) = batch(&r);
    let want_tokens = real_rows(&ids.to_dtype(DType::I64).unwrap(), &mask);
    assert_eq!(
        out["tokens"].to_vec1::<i64>().unwrap(),
        want_tokens.to_vec1::<i64>().unwrap()
    );
    let docs = out["doc"].to_vec1::<i64>().unwrap();
    let mut expect_doc = vec![];
    for (i, m) in mask.iter().enumerate() {
        expect_doc.extend(std::iter::repeat_n(
            i as i64,
            m.iter().filter(|&&x| x == 1).count(),
        ));
    }
    assert_eq!(docs, expect_doc);
    let mut compared = 0;
    for (k, v) in out {
        if k == "tokens" || k == "doc" {
            continue;
        }
        if !logits && (k == "logits" || k == "token_ce") {
            panic!("unexpected {k}");
        }
        let want = real_rows(&r[k.as_str()], &mask);
        let diff = max_abs_diff(v, &want);
        assert!(diff <= 1e-4, "{name} {k}: {diff:e}");
        compared += 1;
    }
    assert!(compared > 0);
}

#[test]
fn trace_gpt2_all_hooks_and_logits_match_hf() {
    let mut args = vec![
        "--model".to_string(),
        fixture("tiny-gpt2"),
        "--hooks".into(),
        "*".into(),
        "--logits".into(),
    ];
    for s in sentences() {
        args.push("--text".into());
        args.push(s);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = trace_ok(&args);
    assert_eq!(
        out.len(),
        2 + 3 * 7 + 3 + 2,
        "tokens, doc, 24 hooks, logits, token_ce"
    );
    check_against_reference("tiny-gpt2", &out, true);
}

#[test]
fn trace_distilbert_matches_hf() {
    let mut args = vec![
        "--model".to_string(),
        fixture("tiny-distilbert"),
        "--hooks".into(),
    ];
    args.push("blocks.*.mlp.hook_post,ln_final.hook_normalized,hook_embed".into());
    for s in sentences() {
        args.push("--text".into());
        args.push(s);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = trace_ok(&args);
    assert_eq!(out.len(), 2 + 3 + 2);
    check_against_reference("tiny-distilbert", &out, false);
}

/// `--file` (one text per line, blank lines skipped) gives exactly what `--text` gives.
#[test]
fn trace_from_a_file_equals_texts_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("texts.txt");
    let texts = ["The cat sat.", "Numbers like 42 and 7.", "Last line"];
    std::fs::write(
        &file,
        format!("{}\n\n{}\n{}\n", texts[0], texts[1], texts[2]),
    )
    .unwrap();
    let model = fixture("tiny-distilbert");
    let from_file = trace_ok(&[
        "--model",
        &model,
        "--file",
        file.to_str().unwrap(),
        "--hooks",
        "blocks.1.*",
    ]);
    let mut args = vec!["--model", model.as_str(), "--hooks", "blocks.1.*"];
    for t in &texts {
        args.extend(["--text", t]);
    }
    let from_args = trace_ok(&args);
    assert_eq!(from_file.len(), from_args.len());
    for (k, v) in &from_file {
        let w = &from_args[k];
        assert_eq!(v.dims(), w.dims(), "{k}");
        assert_eq!(
            v.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            w.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            "{k}"
        );
    }
    assert_eq!(
        *from_file["doc"].to_vec1::<i64>().unwrap().last().unwrap(),
        2
    );
}

#[test]
fn prepend_bos_puts_endoftext_first() {
    let out = trace_ok(&[
        "--model",
        &fixture("tiny-gpt2"),
        "--text",
        "Hello world",
        "--text",
        "Bye",
        "--hooks",
        "hook_embed",
        "--prepend-bos",
    ]);
    let tokens = out["tokens"].to_vec1::<i64>().unwrap();
    let doc = out["doc"].to_vec1::<i64>().unwrap();
    // <|endoftext|> is id 0 in the fixture tokenizer.
    let firsts: Vec<i64> = (0..tokens.len())
        .filter(|&i| i == 0 || doc[i] != doc[i - 1])
        .map(|i| tokens[i])
        .collect();
    assert_eq!(firsts, vec![0, 0]);
}

#[test]
fn random_weights_gpt2_from_a_config_file() {
    let out = trace_ok(&[
        "--model",
        "configs/models/distilgpt2.json",
        "--random-weights",
        "--seed",
        "3",
        "--tokenizer",
        &format!("{}/tokenizer.json", fixture("tiny-gpt2")),
        "--text",
        "The cat sat on the mat.",
        "--hooks",
        "blocks.5.hook_resid_post,blocks.0.mlp.hook_post",
    ]);
    let n = out["tokens"].dims1().unwrap();
    assert_eq!(out["blocks.5.hook_resid_post"].dims(), &[n, 768]);
    assert_eq!(out["blocks.0.mlp.hook_post"].dims(), &[n, 3072]);
}

#[test]
fn truncate_cuts_long_texts_and_keeps_sep() {
    let long = "word ".repeat(200);
    let r = unravel(&[
        "trace",
        "--model",
        &fixture("tiny-distilbert"),
        "--text",
        &long,
        "--hooks",
        "hook_embed",
        "--out",
        "/nonexistent-dir-xyz/a.safetensors",
    ]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("--truncate") && r.stderr.contains("64 positions"),
        "{}",
        r.stderr
    );
    let out = trace_ok(&[
        "--model",
        &fixture("tiny-distilbert"),
        "--text",
        &long,
        "--hooks",
        "hook_embed",
        "--truncate",
    ]);
    let tokens = out["tokens"].to_vec1::<i64>().unwrap();
    assert_eq!(tokens.len(), 64);
    assert_eq!((tokens[0], tokens[63]), (2, 3), "[CLS] ... [SEP]");
}

/// Each bad input: non-zero exit, one line on stderr naming the culprit.
#[test]
fn bad_input_gives_one_clear_line() {
    let gpt2 = fixture("tiny-gpt2");
    let distilbert = fixture("tiny-distilbert");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let out = out.to_str().unwrap();
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixtures().join("tiny-gpt2").join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not a safetensors file").unwrap();
    let broken = broken.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "--model",
                &gpt2,
                "--text",
                "hi",
                "--hooks",
                "blocks.9.hook_resid_post",
            ],
            vec!["unknown hook", "blocks.9.hook_resid_post", "blocks.{0..2}"],
        ),
        (
            vec![
                "--model",
                "./no/such/model",
                "--text",
                "hi",
                "--hooks",
                "hook_embed",
            ],
            vec!["./no/such/model", "does not exist"],
        ),
        (
            vec!["--model", broken, "--text", "hi", "--hooks", "hook_embed"],
            vec!["model.safetensors", "safetensors"],
        ),
        (
            vec!["--model", &gpt2, "--text", "", "--hooks", "hook_embed"],
            vec!["--text #1", "empty"],
        ),
        (
            vec!["--model", &gpt2, "--hooks", "hook_embed"],
            vec!["no texts"],
        ),
        (
            vec![
                "--model",
                &gpt2,
                "--file",
                "/no/such/texts.txt",
                "--hooks",
                "hook_embed",
            ],
            vec!["/no/such/texts.txt"],
        ),
        (
            vec![
                "--model",
                &distilbert,
                "--text",
                "hi",
                "--hooks",
                "hook_embed",
                "--logits",
            ],
            vec!["--logits", "distilbert"],
        ),
        (
            vec![
                "--model",
                &gpt2,
                "--text",
                "hi",
                "--hooks",
                "hook_embed",
                "--device",
                "tpu",
            ],
            vec!["--device", "tpu"],
        ),
        (
            vec![
                "--model",
                &gpt2,
                "--text",
                "hi",
                "--hooks",
                "hook_embed",
                "--dtype",
                "f64",
            ],
            vec!["--dtype", "f64"],
        ),
        (
            vec![
                "--model",
                "configs/models/gpt2.json",
                "--text",
                "hi",
                "--hooks",
                "hook_embed",
            ],
            vec!["model.safetensors", "--random-weights"],
        ),
    ];
    for (args, needles) in cases {
        let mut all = vec!["trace"];
        all.extend(args.iter().copied());
        all.extend(["--out", out]);
        let r = unravel(&all);
        assert!(!r.ok, "{args:?} should fail");
        let line = r.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{args:?}: one line, got {line}");
        for n in needles {
            assert!(line.contains(n), "{args:?}: `{n}` not in: {line}");
        }
        assert!(!Path::new(out).exists(), "no output on failure");
    }
}

#[test]
fn help_has_examples() {
    let r = unravel(&["--help"]);
    assert!(r.ok && r.stdout.contains("Examples:") && r.stdout.contains("trace"));
    let r = unravel(&["trace", "--help"]);
    assert!(r.ok && r.stdout.contains("Examples:") && r.stdout.contains("--prepend-bos"));
}
