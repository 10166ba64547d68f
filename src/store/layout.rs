//! Where a dataset folder keeps what is not a shard. The shards lie at the top level; everything
//! else — the manifest, the part manifests of a split run, the ground truth of planted data — lies
//! in one metadata folder, [`META_DIR`] (`__unravel__/`), so that the folder reads as one table:
//! pyarrow, pandas and duckdb skip names starting with `_` or `.`, HF datasets skips `.`-names
//! and `__…__` folders (but not `_x` files), and polars reads `DIR/*.parquet`. Lock files
//! (`.unravel.lock`) and shard temp files (`.shard-….parquet.tmp`) stay at the top level,
//! hidden by their leading dot.
//!
//! Datasets written before this layout keep their metadata at the top level (`manifest.json`,
//! `manifest-pNN.json`, `truth/`): they are still read, and a resumed one moves its manifest
//! into the metadata folder.

use std::path::{Path, PathBuf};

/// The metadata folder inside a dataset folder.
pub const META_DIR: &str = "__unravel__";

/// `dir/__unravel__`: where a dataset in `dir` keeps its metadata.
pub fn meta_dir(dir: &Path) -> PathBuf {
    dir.join(META_DIR)
}

/// `dir/__unravel__/name`, or the legacy `dir/name` where only that exists. (The metadata folder
/// itself is no legacy dataset, though its manifest sits where a legacy one would.)
pub fn meta_or_legacy(dir: &Path, name: &str) -> PathBuf {
    let path = meta_dir(dir).join(name);
    let old = dir.join(name);
    let is_meta = dir.file_name() == Some(META_DIR.as_ref());
    if !path.exists() && old.exists() && !is_meta {
        old
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_top_level_name_is_used_only_where_it_alone_exists() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (
            dir.path().join("__unravel__/x.json"),
            dir.path().join("x.json"),
        );
        assert_eq!(meta_or_legacy(dir.path(), "x.json"), new);
        std::fs::write(&old, "{}").unwrap();
        assert_eq!(meta_or_legacy(dir.path(), "x.json"), old);
        std::fs::create_dir(meta_dir(dir.path())).unwrap();
        std::fs::write(&new, "{}").unwrap();
        assert_eq!(meta_or_legacy(dir.path(), "x.json"), new);
        let meta = meta_dir(dir.path());
        assert_eq!(
            meta_or_legacy(&meta, "x.json"),
            meta.join("__unravel__/x.json")
        );
    }
}
