//! Which files an import reads: the inputs as given, folders expanded. A folder saved by HF
//! datasets (`state.json`, as SAELens's cached activations are) is read in the order its
//! `state.json` lists; any other folder is searched recursively for the known extensions, in
//! natural order (`shard_2` before `shard_10`), skipping names that start with `.` or `_`.

use std::path::{Path, PathBuf};

use super::ImportError;

/// The kinds of input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Npy,
    Npz,
    Safetensors,
    /// Parquet or Arrow IPC.
    Table,
}

impl Kind {
    fn of(path: &Path) -> Option<Kind> {
        match path.extension()?.to_str()? {
            "npy" => Some(Kind::Npy),
            "npz" => Some(Kind::Npz),
            "safetensors" => Some(Kind::Safetensors),
            "parquet" | "arrow" | "feather" | "ipc" => Some(Kind::Table),
            _ => None,
        }
    }
}

/// Every file to read, in order, with its kind.
pub(crate) fn expand(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, Kind)>, ImportError> {
    let mut out = vec![];
    for input in inputs {
        if input.is_dir() {
            let found = folder_files(input)?;
            if found.is_empty() {
                return Err(ImportError::input(
                    input,
                    "holds no .npy, .npz, .safetensors, .parquet or .arrow file",
                ));
            }
            out.extend(found);
        } else if !input.exists() {
            return Err(ImportError::input(input, "no such file or folder"));
        } else {
            let kind = Kind::of(input).ok_or_else(|| {
                ImportError::input(
                    input,
                    "unknown extension; import reads .npy, .npz, .safetensors, .parquet, .arrow",
                )
            })?;
            out.push((input.clone(), kind));
        }
    }
    Ok(out)
}

/// The files of one folder: `state.json`'s data files, else a recursive search.
fn folder_files(dir: &Path) -> Result<Vec<(PathBuf, Kind)>, ImportError> {
    let state = dir.join("state.json");
    if state.is_file() {
        let text = std::fs::read_to_string(&state).map_err(|e| ImportError::io(&state, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ImportError::input(&state, format!("not valid JSON: {e}")))?;
        let files: Vec<(PathBuf, Kind)> = v["_data_files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["filename"].as_str())
            .map(|f| (dir.join(f), Kind::Table))
            .collect();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let mut out = vec![];
    walk(dir, &mut out)?;
    out.sort_by_key(|a| natural_key(&a.0));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Kind)>) -> Result<(), ImportError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ImportError::io(dir, e))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if let Some(kind) = Kind::of(&path) {
            out.push((path, kind));
        }
    }
    Ok(())
}

/// A path split into text and numbers, so that `shard_2` sorts before `shard_10`.
fn natural_key(path: &Path) -> Vec<(String, u64)> {
    let s = path.to_string_lossy();
    let mut key = vec![];
    let mut text = String::new();
    let mut num: Option<u64> = None;
    for c in s.chars() {
        match (c.to_digit(10), num) {
            (Some(d), Some(n)) => num = Some(n.saturating_mul(10).saturating_add(d as u64)),
            (Some(d), None) => num = Some(d as u64),
            (None, Some(n)) => {
                key.push((std::mem::take(&mut text), n));
                num = None;
                text.push(c);
            }
            (None, None) => text.push(c),
        }
    }
    key.push((text, num.unwrap_or(0)));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_by_value() {
        let mut v = vec![
            "a/shard_10/x.arrow",
            "a/shard_2/x.arrow",
            "a/shard_1/y.arrow",
        ];
        v.sort_by_key(|p| natural_key(Path::new(p)));
        assert_eq!(
            v,
            [
                "a/shard_1/y.arrow",
                "a/shard_2/x.arrow",
                "a/shard_10/x.arrow"
            ]
        );
    }
}
