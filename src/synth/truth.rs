//! Where a planted dataset keeps its ground truth, and reading the planted directions back.
//! (Its own file so that writing the truth, `planted.rs`, and checking against it, `verify.rs`,
//! both depend on it and not on each other.)

use std::path::{Path, PathBuf};

/// The truth's folder inside a planted dataset.
pub const TRUTH_DIR: &str = "truth";
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
    #[error("{}: no truth/{TRUTH_FILE} (made by `unravel synth`)", .0.display())]
    Missing(PathBuf),
    #[error("{}: {reason}", file.display())]
    Read { file: PathBuf, reason: String },
}

/// Reads a planted dataset's ground truth. `dir` is the dataset folder (holding `truth/`) or the
/// truth folder itself.
pub fn read_truth(dir: &Path) -> Result<Truth, TruthError> {
    let file = [dir.join(TRUTH_DIR).join(TRUTH_FILE), dir.join(TRUTH_FILE)]
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
