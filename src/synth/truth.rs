//! Where a planted dataset keeps its ground truth, and reading the planted directions back.
//! (Its own file so that writing the truth, `planted.rs`, and checking against it, `verify.rs`,
//! both depend on it and not on each other.)

use std::path::{Path, PathBuf};

use crate::store::{meta_dir, meta_or_legacy, META_DIR};

/// The truth's folder inside a planted dataset's metadata folder (`__unravel__/truth/`; datasets
/// written before that folder have it at the top level, `truth/`).
pub const TRUTH_DIR: &str = "truth";

/// Where a planted dataset being written into `dir` saves its truth: `dir/__unravel__/truth`.
pub fn new_truth_dir(dir: &Path) -> PathBuf {
    meta_dir(dir).join(TRUTH_DIR)
}

/// The truth folder of the dataset in `dir`: `__unravel__/truth/`, else the legacy `truth/` where
/// only that exists.
pub fn truth_dir(dir: &Path) -> PathBuf {
    meta_or_legacy(dir, TRUTH_DIR)
}

/// The dataset folder that `path` names or whose truth folder it is (`DIR`, `DIR/__unravel__/truth`
/// or the legacy `DIR/truth`): the nearest folder at or above it holding a manifest.
pub fn dataset_of(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .take(3)
        .find(|p| crate::store::manifest_path(p).is_file())
        .map(Path::to_path_buf)
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
    #[error("{}: no {META_DIR}/{TRUTH_DIR}/{TRUTH_FILE} (made by `unravel synth`)", .0.display())]
    Missing(PathBuf),
    #[error("{}: {reason}", file.display())]
    Read { file: PathBuf, reason: String },
}

/// Reads a planted dataset's ground truth. `dir` is the dataset folder (holding
/// `__unravel__/truth/`) or the truth folder itself.
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
        let new = dir.path().join("__unravel__/truth");
        assert_eq!(truth_dir(dir.path()), new);
        assert_eq!(new_truth_dir(dir.path()), new);
        std::fs::create_dir(dir.path().join("truth")).unwrap();
        assert_eq!(truth_dir(dir.path()), dir.path().join("truth"));
        assert_eq!(new_truth_dir(dir.path()), new);
        std::fs::create_dir_all(&new).unwrap();
        assert_eq!(truth_dir(dir.path()), new);
    }

    #[test]
    fn the_dataset_of_a_truth_folder_is_the_folder_holding_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let truth = new_truth_dir(dir.path());
        std::fs::create_dir_all(&truth).unwrap();
        assert_eq!(dataset_of(&truth), None);
        std::fs::write(dir.path().join("__unravel__/manifest.json"), "{}").unwrap();
        for p in [dir.path(), truth.as_path(), truth.parent().unwrap()] {
            assert_eq!(
                dataset_of(p).as_deref(),
                Some(dir.path()),
                "{}",
                p.display()
            );
        }
    }
}
