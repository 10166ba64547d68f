//! metrics.jsonl: one JSON line per logging window ([`LogRecord`]) and per evaluation; a resumed
//! run cuts it back to its length at the checkpoint.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::sae::{Result, SaeError};

/// One `metrics.jsonl` line of training.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    pub kind: &'static str,
    pub step: u64,
    pub tokens: u64,
    pub loss: f64,
    pub mse: f64,
    pub l1: f64,
    pub l0: f64,
    /// Explained variance over the tokens of this logging window.
    pub ev: f64,
    pub lr: f32,
    pub l1_coefficient: f32,
    pub grad_norm: f64,
    pub dead_frac: f64,
    pub dense_frac: f64,
    pub tokens_per_s: f64,
}

/// Appends one JSON line to metrics.jsonl.
pub(super) fn append_metrics(path: &Path, value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| SaeError::Internal(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SaeError::File {
            path: path.into(),
            reason: e.to_string(),
        })?;
    writeln!(f, "{line}").map_err(|e| SaeError::File {
        path: path.into(),
        reason: e.to_string(),
    })
}

pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Drops the metric lines written after a checkpoint: cuts metrics.jsonl back to `len` bytes.
pub(super) fn truncate_metrics(path: &Path, len: u64) -> Result<()> {
    if file_len(path) > len {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| SaeError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        f.set_len(len).map_err(|e| SaeError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
