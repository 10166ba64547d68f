//! The checks every read of a dataset passes through, so no command can compute on damaged,
//! partial or non-finite data by forgetting one:
//!
//! - **complete**: a dataset whose manifest says `complete: false` (an interrupted extract, a
//!   failed synth or plant) is refused at open unless the reader allows it;
//! - **bytes**: each shard's sha256 is checked against the manifest the first time this process
//!   opens it (once per process, whichever command or thread opens it);
//! - **finite**: hook values holding NaN/Inf are refused where they are decoded, or their rows
//!   dropped when the reader asks for that.
//!
//! Cost of the sha256 pass: see BENCHMARKS.md ("Integrity checks").

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};

use super::error::{Result, StoreError};
use super::manifest::Manifest;

/// How a dataset is read: what the commands' `--allow-incomplete` and `--skip-nonfinite` set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Read a dataset whose manifest says `complete: false`.
    pub allow_incomplete: bool,
    /// Drop rows whose hook values hold NaN/Inf instead of refusing them.
    pub skip_nonfinite: bool,
}

/// Refuses an incomplete dataset unless `options` allow it, saying how to complete it.
pub(crate) fn check_complete(dir: &Path, manifest: &Manifest, options: ReadOptions) -> Result<()> {
    if manifest.complete || options.allow_incomplete {
        return Ok(());
    }
    Err(StoreError::Incomplete {
        dir: dir.to_path_buf(),
        hint: completion_hint(manifest),
    })
}

/// What to do about an incomplete dataset, by the command that wrote it.
pub fn completion_hint(manifest: &Manifest) -> String {
    if manifest.model.arch == "synthetic" {
        "the `unravel synth` that wrote it did not finish: delete the folder and run synth again"
            .into()
    } else {
        "the run that wrote it did not finish: finish an `unravel extract` with the same flags and \
         --resume; an `unravel plant` output cannot be resumed: delete it and plant again"
            .into()
    }
}

/// Shards (path, expected sha256) this process has already hashed and found intact.
static VERIFIED: LazyLock<Mutex<HashSet<(PathBuf, String)>>> = LazyLock::new(Mutex::default);

/// Checks `path` hashes to `sha256` with `bytes` bytes, unless this process already did.
pub(crate) fn check_shard_once(path: &Path, sha256: &str, bytes: u64) -> Result<()> {
    let key = (path.to_path_buf(), sha256.to_string());
    if lock_verified().contains(&key) {
        return Ok(());
    }
    check_shard(path, sha256, bytes)?;
    lock_verified().insert(key);
    Ok(())
}

fn lock_verified() -> std::sync::MutexGuard<'static, HashSet<(PathBuf, String)>> {
    // A panic elsewhere while holding the lock leaves a valid set behind.
    VERIFIED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hashes `path` and compares it with the manifest's record.
fn check_shard(path: &Path, sha256: &str, bytes: u64) -> Result<()> {
    let (actual, actual_bytes) = hash_file(path)?;
    if actual != sha256 || actual_bytes != bytes {
        return Err(StoreError::Checksum {
            path: path.to_path_buf(),
            expected: format!("{sha256} ({bytes} bytes)"),
            actual: format!("{actual} ({actual_bytes} bytes)"),
        });
    }
    Ok(())
}

/// sha256 (hex) and length of a file, streamed.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Indices of the rows of `values` (`rows × d`) holding a NaN or ±Inf.
pub(crate) fn nonfinite_rows(values: &[f32], d: usize) -> Vec<usize> {
    if d == 0 || values.iter().all(|v| v.is_finite()) {
        return vec![];
    }
    values
        .chunks_exact(d)
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| i)
        .collect()
}

/// Removes rows `drop` (sorted indices) from `values` (`rows × d`) in place.
pub(crate) fn remove_rows(values: &mut Vec<f32>, d: usize, drop: &[usize]) {
    let dropped: HashSet<usize> = drop.iter().copied().collect();
    let rows = values.len() / d;
    let mut kept = 0;
    for r in 0..rows {
        if !dropped.contains(&r) {
            values.copy_within(r * d..(r + 1) * d, kept * d);
            kept += 1;
        }
    }
    values.truncate(kept * d);
}

/// Keeps the elements of a column whose `keep` flag is set (the other columns of a row set that
/// lost rows to [`remove_rows`]).
pub(crate) fn retain_rows<T>(column: &mut Vec<T>, keep: &[bool]) {
    let mut k = keep.iter();
    column.retain(|_| *k.next().unwrap_or(&false));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_removes_nonfinite_rows() {
        let mut v = vec![1.0, 2.0, f32::NAN, 4.0, 5.0, 6.0, 7.0, f32::INFINITY];
        let bad = nonfinite_rows(&v, 2);
        assert_eq!(bad, vec![1, 3]);
        remove_rows(&mut v, 2, &bad);
        assert_eq!(v, vec![1.0, 2.0, 5.0, 6.0]);
        assert!(nonfinite_rows(&v, 2).is_empty());
    }

    #[test]
    fn a_changed_byte_fails_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let (sha, n) = hash_file(&path).unwrap();
        check_shard_once(&path, &sha, n).unwrap();
        std::fs::write(&path, b"hello World").unwrap();
        let e = check_shard(&path, &sha, n).unwrap_err().to_string();
        assert!(e.contains("sha256 mismatch"), "{e}");
    }
}
