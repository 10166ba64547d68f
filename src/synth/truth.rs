//! Where a planted dataset keeps its ground truth, and reading the planted directions back.
//! (Its own file so that writing the truth, `planted.rs`, and checking against it, `verify.rs`,
//! both depend on it and not on each other.)

use std::path::{Path, PathBuf};

/// The truth's folder inside a planted dataset; the underscore makes parquet readers that take
/// the whole dataset folder (pyarrow, pandas, polars, HF datasets) skip it.
pub const TRUTH_DIR: &str = "_truth";
/// The truth's folder in datasets written before the rename; still read.
pub const LEGACY_TRUTH_DIR: &str = "truth";

/// The truth folder of the dataset in `dir`: `_truth/`, else the legacy `truth/` where only that
/// exists.
pub fn truth_dir(dir: &Path) -> PathBuf {
    let path = dir.join(TRUTH_DIR);
    let old = dir.join(LEGACY_TRUTH_DIR);
    if !path.exists() && old.is_dir() {
        old
    } else {
        path
    }
}
/// The planted directions and frequencies (safetensors) inside [`TRUTH_DIR`].
pub const TRUTH_FILE: &str = "ground_truth.safetensors";

/// A planted dataset's ground truth, as [`read_truth`] returns it.
#[derive(Debug, Clone)]
pub struct Truth {
    /// Directions, `[n, d]` row-major.
    pub directions: Vec<f32>,
    /// Frequencies `[n]` (empty when the file holds none).
    pub frequencies: Vec<f32>,
    pub d: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("{}: no {TRUTH_DIR}/{TRUTH_FILE} (made by `unravel synth`)", .0.display())]
    Missing(PathBuf),
    #[error("{}: {reason}", file.display())]
    Read { file: PathBuf, reason: String },
}

/// Reads a planted dataset's ground truth. `dir` is the dataset folder (holding `_truth/`) or the
/// truth folder itself.
pub fn read_truth(dir: &Path) -> Result<Truth, TruthError> {
    let file = [truth_dir(dir).join(TRUTH_FILE), dir.join(TRUTH_FILE)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| TruthError::Missing(dir.to_path_buf()))?;
    let bad = |reason: String| TruthError::Read {
        file: file.clone(),
        reason,
    };
    let t = candle_core::safetensors::load(&file, &candle_core::Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let dirs = t
        .get("directions")
        .ok_or_else(|| bad("no `directions` tensor".into()))?;
    let (_, d) = dirs.dims2().map_err(|e| bad(e.to_string()))?;
    let flat = |x: &candle_core::Tensor| {
        x.flatten_all()
            .and_then(|x| x.to_vec1::<f32>())
            .map_err(|e| bad(e.to_string()))
    };
    let frequencies = match t.get("frequencies") {
        Some(f) => flat(f)?,
        None => vec![],
    };
    Ok(Truth {
        directions: flat(dirs)?,
        frequencies,
        d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_truth_folder_is_found_where_only_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(truth_dir(dir.path()), dir.path().join("_truth"));
        std::fs::create_dir(dir.path().join("truth")).unwrap();
        assert_eq!(truth_dir(dir.path()), dir.path().join("truth"));
        std::fs::create_dir(dir.path().join("_truth")).unwrap();
        assert_eq!(truth_dir(dir.path()), dir.path().join("_truth"));
    }
}
