//! Helpers shared by the run folder's two formats (the own checkpoints and the SAELens layout):
//! safetensors written from and read back into host vectors, file errors, and the `DIVERGED`
//! marker that stands in for the export when training diverged.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::{Result, SaeError};

/// The run folder's checkpoints, and the file naming the newest one.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LATEST_FILE: &str = "latest";

/// Written instead of the export when training diverged; holds the reason.
pub const DIVERGED_FILE: &str = "DIVERGED";

pub(super) fn file_err(path: &Path, reason: impl std::fmt::Display) -> SaeError {
    SaeError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Records that the run in `dir` diverged: the `DIVERGED` marker (one line).
pub fn mark_diverged(dir: &Path, reason: &str) -> Result<()> {
    let path = dir.join(DIVERGED_FILE);
    crate::io::write_atomic(&path, format!("{reason}\n").as_bytes()).map_err(|e| file_err(&path, e))
}

/// Removes the marker (a resumed run starts over from its last checkpoint).
pub fn clear_diverged(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(DIVERGED_FILE));
}

/// The last checkpoint of a run folder that has checkpoints but no export yet (training
/// stopped or still running): e.g. `step-000023156`.
pub fn unfinished(dir: &Path) -> Option<String> {
    if dir.join(super::saelens_cfg::CFG_FILE).exists() {
        return None;
    }
    std::fs::read_to_string(dir.join(CHECKPOINTS_DIR).join(LATEST_FILE))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The reason the run in `dir` diverged, when it did.
pub fn diverged(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(DIVERGED_FILE))
        .ok()
        .map(|s| s.trim().to_string())
}

pub(super) fn to_tensor_f32(v: &[f32], shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_slice(v, shape, &Device::Cpu)?)
}

pub(super) fn to_tensor_u64(v: &[u64]) -> Result<Tensor> {
    let n = v.len();
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Ok(Tensor::from_vec(v, n, &Device::Cpu)?)
}

/// The raw little-endian bytes of tensor `name`, checked to be `len` elements of `dtype`.
pub(super) fn tensor_bytes<'a>(
    st: &'a safetensors::SafeTensors,
    name: &str,
    dtype: safetensors::Dtype,
    len: usize,
    path: &Path,
) -> Result<&'a [u8]> {
    let t = st
        .tensor(name)
        .map_err(|e| file_err(path, format!("tensor `{name}`: {e}")))?;
    if t.dtype() != dtype || t.data().len() != len * dtype.bitsize() / 8 {
        return Err(file_err(
            path,
            format!("tensor `{name}` has the wrong type or size (expected {len} × {dtype:?})"),
        ));
    }
    Ok(t.data())
}

pub(super) fn read_f32(
    st: &safetensors::SafeTensors,
    name: &str,
    len: usize,
    path: &Path,
) -> Result<Vec<f32>> {
    let b = tensor_bytes(st, name, safetensors::Dtype::F32, len, path)?;
    Ok(b.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// u64 counters, stored as i64 (candle has no u64).
pub(super) fn read_u64(
    st: &safetensors::SafeTensors,
    name: &str,
    len: usize,
    path: &Path,
) -> Result<Vec<u64>> {
    let b = tensor_bytes(st, name, safetensors::Dtype::I64, len, path)?;
    Ok(b.chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as u64)
        .collect())
}
