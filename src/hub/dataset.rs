//! `--corpus hf://datasets/OWNER/NAME[@REVISION][/GLOB]`: a corpus from a Hugging Face hub
//! dataset, read through the standard hub cache (`HF_HOME`, `HF_HUB_OFFLINE=1` for the cache only).
//!
//! The files matching GLOB (default: every `.parquet` file) are downloaded once into the cache and
//! then read like local files; their names inside the repo are what the corpus hash records.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiError;
use hf_hub::{Cache, Repo, RepoType};

use super::HubOptions;

pub const PREFIX: &str = "hf://datasets/";

/// A parsed `hf://datasets/...` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpec {
    /// `OWNER/NAME`.
    pub repo: String,
    pub revision: String,
    /// Glob of files inside the repo.
    pub glob: String,
}

/// What can go wrong with an `hf://datasets/...` spec. The library errors inside are kept as
/// values, not as sources: the message already says them.
#[derive(Debug, thiserror::Error)]
pub enum HubDatasetError {
    /// The spec lacks an owner, a name or a revision.
    #[error(
        "expected hf://datasets/OWNER/NAME[@REVISION][/GLOB], e.g. \
         hf://datasets/stanfordnlp/imdb/plain_text/train-*.parquet"
    )]
    Spec { spec: String },
    /// The glob after the repo name does not parse.
    #[error("bad glob `{glob}`: {error}")]
    Glob { glob: String, error: globset::Error },
    /// No file of the repo matches the glob; `files` are the first few names, comma-separated.
    #[error("no file matches `{glob}` (files: {files}); add a glob after the repo name")]
    NoMatch { glob: String, files: String },
    /// The repo is not in the local cache (and the network is not to be used, or failed).
    #[error(
        "not in the hub cache at {}{}",
        cache.display(),
        if *offline { " and HF_HUB_OFFLINE=1 is set; run once with network access or unset HF_HUB_OFFLINE" } else { "" }
    )]
    NotCached { cache: PathBuf, offline: bool },
    /// The hub client could not be built.
    #[error("{0}")]
    Client(ApiError),
    /// Listing the repo failed (no network, say) and the cache could not stand in.
    #[error("cannot list the repo on the hub ({error}); from the cache: {cached}")]
    List {
        error: ApiError,
        cached: Box<HubDatasetError>,
    },
    /// Downloading one of the matching files failed.
    #[error("cannot download {name}: {error}")]
    Download { name: String, error: ApiError },
}

/// Parses a spec; `None` when it is not a hub dataset.
pub fn parse(spec: &str) -> Option<Result<HubSpec, HubDatasetError>> {
    let rest = spec.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let (owner, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let glob = parts
        .next()
        .filter(|g| !g.is_empty())
        .unwrap_or("**/*.parquet");
    let (name, revision) = match name.split_once('@') {
        Some((n, r)) => (n, r),
        None => (name, "main"),
    };
    if owner.is_empty() || name.is_empty() || revision.is_empty() {
        return Some(Err(HubDatasetError::Spec { spec: spec.into() }));
    }
    Some(Ok(HubSpec {
        repo: format!("{owner}/{name}"),
        revision: revision.into(),
        glob: glob.into(),
    }))
}

fn matcher(glob: &str) -> Result<globset::GlobMatcher, HubDatasetError> {
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|error| HubDatasetError::Glob {
            glob: glob.into(),
            error,
        })
}

/// Every file of a cached snapshot, repo-relative and `/`-separated.
fn snapshot_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = vec![];
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The cached snapshot folder of a revision (a branch or tag through `refs/`, or a commit).
fn snapshot_dir(cache: &Cache, spec: &HubSpec) -> Option<PathBuf> {
    let repo_dir = cache
        .path()
        .join(Repo::new(spec.repo.clone(), RepoType::Dataset).folder_name());
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(&spec.revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| spec.revision.clone());
    let dir = repo_dir.join("snapshots").join(commit);
    dir.is_dir().then_some(dir)
}

/// The local files of a hub dataset spec (downloading what the cache lacks unless offline), and
/// the folder their names are relative to.
pub fn files(spec: &HubSpec) -> Result<(PathBuf, Vec<PathBuf>), HubDatasetError> {
    let m = matcher(&spec.glob)?;
    // The standard cache, offline when HF_HUB_OFFLINE says so; the revision is the spec's.
    let hub = HubOptions::default();
    let (cache, offline) = (hub.cache(), hub.offline);
    let repo = Repo::with_revision(spec.repo.clone(), RepoType::Dataset, spec.revision.clone());
    let pick = |names: &[String]| -> Result<Vec<String>, HubDatasetError> {
        let picked: Vec<String> = names.iter().filter(|n| m.is_match(n)).cloned().collect();
        if picked.is_empty() {
            let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
            let more = if names.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            return Err(HubDatasetError::NoMatch {
                glob: spec.glob.clone(),
                files: format!("{}{more}", shown.join(", ")),
            });
        }
        Ok(picked)
    };
    let offline_files = || -> Result<(PathBuf, Vec<PathBuf>), HubDatasetError> {
        let dir = snapshot_dir(&cache, spec).ok_or_else(|| HubDatasetError::NotCached {
            cache: cache.path().clone(),
            offline,
        })?;
        let names = pick(&snapshot_files(&dir))?;
        let paths = names.iter().map(|n| dir.join(n)).collect();
        Ok((dir, paths))
    };
    if offline {
        return offline_files();
    }
    let api = super::client(&cache)
        .map_err(HubDatasetError::Client)?
        .repo(repo);
    let info = match api.info() {
        Ok(info) => info,
        // No network: whatever the cache already holds.
        Err(error) => {
            return offline_files().map_err(|cached| HubDatasetError::List {
                error,
                cached: Box::new(cached),
            })
        }
    };
    let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let picked = pick(&names)?;
    let mut paths = Vec::with_capacity(picked.len());
    for name in &picked {
        paths.push(api.get(name).map_err(|error| HubDatasetError::Download {
            name: name.clone(),
            error,
        })?);
    }
    // Downloaded files live in snapshots/<commit>/<name>: names are relative to that folder.
    let base = paths
        .first()
        .and_then(|p| {
            let depth = picked[0].split('/').count();
            p.ancestors().nth(depth).map(Path::to_path_buf)
        })
        .unwrap_or_default();
    Ok((base, paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_repo_revision_and_glob() {
        let s = |t: &str| parse(t).unwrap().unwrap();
        assert_eq!(
            s("hf://datasets/stanfordnlp/imdb@v1/plain_text/train-*.parquet"),
            HubSpec {
                repo: "stanfordnlp/imdb".into(),
                revision: "v1".into(),
                glob: "plain_text/train-*.parquet".into()
            }
        );
        let d = s("hf://datasets/NeelNanda/pile-10k");
        assert_eq!(
            (d.revision.as_str(), d.glob.as_str()),
            ("main", "**/*.parquet")
        );
        assert!(parse("data/corpus.jsonl").is_none());
        assert!(parse("hf://datasets/onlyowner").unwrap().is_err());
        assert!(parse("hf://datasets/a/b@").unwrap().is_err());
    }

    #[test]
    fn globs_match_whole_path_segments() {
        let m = matcher("plain_text/train-*.parquet").unwrap();
        assert!(m.is_match("plain_text/train-00000-of-00001.parquet"));
        assert!(!m.is_match("plain_text/test-00000-of-00001.parquet"));
        assert!(!m.is_match("other/plain_text/train-0.parquet"));
        assert!(matcher("**/*.parquet").unwrap().is_match("data/x.parquet"));
    }
}
