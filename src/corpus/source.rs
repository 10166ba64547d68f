//! Which files a corpus spec names, in a fixed order, and the corpus hash.
//!
//! A spec is one of:
//! - a folder: every `.txt`, `.jsonl` (or `.ndjson`) or `.parquet` file beneath it, recursively
//!   (hidden files and folders skipped, symlinks followed, as in a Hugging Face cache snapshot);
//!   files with other extensions (README.md, …) are ignored;
//! - a glob such as `data/train-*.parquet`: every file it matches (all must be of one format);
//! - a single file, whose extension gives the format (a single `.txt` file is one document).
//!
//! Files are sorted by their path relative to the spec's base folder (byte order), so the
//! document order never depends on the file system. All files must have the same format.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{CorpusError, Result};

/// The file format of a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusFormat {
    /// Plain text, one document per file.
    Txt,
    /// JSON lines, one document per line.
    Jsonl,
    /// Parquet files with a text column, one document per row.
    Parquet,
}

impl CorpusFormat {
    /// The format's name for the manifest: `txt`, `jsonl` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            CorpusFormat::Txt => "txt",
            CorpusFormat::Jsonl => "jsonl",
            CorpusFormat::Parquet => "parquet",
        }
    }

    /// The format a file's extension says, if it is one of ours.
    fn of_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "txt" => Some(CorpusFormat::Txt),
            "jsonl" | "ndjson" => Some(CorpusFormat::Jsonl),
            "parquet" => Some(CorpusFormat::Parquet),
            _ => None,
        }
    }
}

/// One file of a corpus.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    /// Where the file is.
    pub path: PathBuf,
    /// Its path relative to the spec's base folder, `/`-separated (the file name for a
    /// single-file spec). The corpus hash uses this name, so moving the corpus keeps the hash.
    pub name: String,
    /// Its size in bytes when the corpus was opened.
    pub bytes: u64,
}

/// Resolves a spec into its format and its files in order.
pub fn resolve(spec: &Path) -> Result<(CorpusFormat, Vec<Source>)> {
    let spec_text = spec.to_string_lossy().into_owned();
    let bad = |reason: String| CorpusError::BadSpec {
        spec: spec_text.clone(),
        reason,
    };
    let is_glob = spec_text.contains(['*', '?', '[']);

    let (base, files) = if let Some(hub_spec) = crate::hub::dataset::parse(&spec_text) {
        let hub = |source| CorpusError::Hub {
            spec: spec_text.clone(),
            source,
        };
        crate::hub::dataset::files(&hub_spec.map_err(hub)?).map_err(hub)?
    } else if is_glob {
        glob_files(spec, &spec_text)?
    } else if spec.is_dir() {
        let mut files = Vec::new();
        walk(spec, 0, &mut files)?;
        (spec.to_path_buf(), files)
    } else if spec.is_file() {
        let base = spec.parent().unwrap_or(Path::new("")).to_path_buf();
        (base, vec![spec.to_path_buf()])
    } else {
        return Err(CorpusError::NotFound(spec.to_path_buf()));
    };

    // Every file must be of one known format.
    let mut format = None;
    for file in &files {
        let Some(f) = CorpusFormat::of_path(file) else {
            return Err(bad(format!(
                "`{}` is not a .txt, .jsonl or .parquet file; name the corpus files with one of those extensions, or narrow the glob",
                file.display()
            )));
        };
        match format {
            None => format = Some(f),
            Some(g) if g != f => {
                return Err(bad(format!(
                    "mixes .{} and .{} files (e.g. `{}`); use a glob that picks one format",
                    g.name(),
                    f.name(),
                    file.display()
                )))
            }
            Some(_) => {}
        }
    }
    let Some(format) = format else {
        return Err(bad(
            "no .txt, .jsonl or .parquet files found; check the path or the glob".into(),
        ));
    };

    let mut sources = files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| CorpusError::io(&path, e))?
                .len();
            let name = relative_name(&path, &base);
            Ok(Source { path, name, bytes })
        })
        .collect::<Result<Vec<_>>>()?;
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((format, sources))
}

/// The files a glob matches, and the glob's literal base folder (the components before the
/// first one with a wildcard).
fn glob_files(spec: &Path, spec_text: &str) -> Result<(PathBuf, Vec<PathBuf>)> {
    let bad = |reason: String| CorpusError::BadSpec {
        spec: spec_text.to_string(),
        reason,
    };
    let paths = glob::glob(spec_text).map_err(|e| bad(format!("not a valid glob: {e}")))?;
    let mut files = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| {
            let file = e.path().to_path_buf();
            CorpusError::io(file, e.into())
        })?;
        if path.is_file() {
            files.push(path);
        }
    }
    let mut base = PathBuf::new();
    for component in spec.components() {
        if component
            .as_os_str()
            .to_string_lossy()
            .contains(['*', '?', '['])
        {
            break;
        }
        base.push(component);
    }
    Ok((base, files))
}

/// Collects the corpus files beneath `dir` (hidden entries skipped, symlinks followed).
fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<()> {
    // A symlink loop would recurse forever; no real corpus is this deep.
    if depth > 32 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| CorpusError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CorpusError::io(dir, e))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, depth + 1, files)?;
        } else if path.is_file() && CorpusFormat::of_path(&path).is_some() {
            files.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `base`, `/`-separated.
fn relative_name(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// SHA-256 (lowercase hex) of a corpus's content: for each source in order, its relative
/// `name` (UTF-8), a 0 byte, its length as u64 little-endian, then its bytes.
///
/// This is a separate streaming pass over every file (1 MiB reads), so it costs one extra read
/// of the corpus — seconds per GB from a warm page cache — and no memory beyond the buffer.
/// The text field, label fields and `lossy` are not part of it (the manifest records them).
pub fn corpus_sha256(sources: &[Source]) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for source in sources {
        let mut file =
            std::fs::File::open(&source.path).map_err(|e| CorpusError::io(&source.path, e))?;
        let len = file
            .metadata()
            .map_err(|e| CorpusError::io(&source.path, e))?
            .len();
        hasher.update(source.name.as_bytes());
        hasher.update([0u8]);
        hasher.update(len.to_le_bytes());
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| CorpusError::io(&source.path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
