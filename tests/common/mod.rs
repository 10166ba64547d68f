//! Shared helpers for the integration tests: fixture paths and tensor comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

/// One run of the `unravel` binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary (2 threads, extra environment `env`); a panic fails the test.
pub fn unravel(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unravel"))
        .args(args)
        .envs(env.iter().copied())
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run unravel");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    r
}

/// Runs the binary and fails the test with its output unless it exits 0.
pub fn ok(args: &[&str]) -> Run {
    let r = unravel(args, &[]);
    assert_eq!(
        r.code, 0,
        "unravel {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

pub fn p(path: &Path) -> String {
    path.display().to_string()
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Reference outputs written by scripts/make_fixtures.py (Hugging Face transformers, f32).
pub fn reference(model: &str) -> HashMap<String, Tensor> {
    let path = fixtures().join(format!("reference/{model}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).expect("reference fixture")
}

pub fn sentences() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("reference/sentences.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Input ids (u32) and 0/1 mask rows from a reference file.
pub fn batch(reference: &HashMap<String, Tensor>) -> (Tensor, Vec<Vec<u8>>) {
    let ids = reference["input_ids"].to_dtype(DType::U32).unwrap();
    let mask: Vec<Vec<u8>> = reference["attention_mask"]
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|m| m as u8).collect())
        .collect();
    (ids, mask)
}

/// Largest |a - b| over the real (mask = 1) tokens of two [b, t, ...] tensors.
pub fn max_diff_real(a: &Tensor, b: &Tensor, mask: &[Vec<u8>]) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap().flatten_from(2).unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_from(2).unwrap();
    let a = a.to_vec3::<f32>().unwrap();
    let b = b.to_vec3::<f32>().unwrap();
    let mut worst = 0f32;
    for (i, row) in mask.iter().enumerate() {
        for (j, &m) in row.iter().enumerate() {
            if m == 1 {
                for (x, y) in a[i][j].iter().zip(&b[i][j]) {
                    let d = (x - y).abs();
                    assert!(!d.is_nan(), "NaN at [{i}, {j}]");
                    worst = worst.max(d);
                }
            }
        }
    }
    worst
}

/// Largest |x| over the real tokens, to scale low-precision tolerances.
pub fn max_abs_real(a: &Tensor, mask: &[Vec<u8>]) -> f32 {
    let zeros = a.zeros_like().unwrap();
    max_diff_real(a, &zeros, mask)
}

/// Records a shard that was rewritten in place (by another tool, or by a test that poisons it)
/// in the dataset's manifest: new sha256 and byte count, so only its contents are at fault.
#[allow(dead_code)]
pub fn rerecord_shard(dir: &Path, file: &str) {
    use sha2::Digest;
    let bytes = std::fs::read(dir.join(file)).unwrap();
    let path = dir.join("__unravel__/manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for s in m["shards"].as_array_mut().unwrap() {
        if s["file"] == file {
            s["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
            s["bytes"] = (bytes.len() as u64).into();
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}
pub mod import_files;
