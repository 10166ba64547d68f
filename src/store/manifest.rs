//! `__unravel__/manifest.json`: what a dataset folder holds and how it was made. Saved atomically
//! after every finished shard, so it only ever lists complete shards. (Datasets written before
//! the `__unravel__/` folder keep it at the top level: read there, moved on the next save.)
//!
//! A run that is part p of n (several machines splitting one corpus) saves
//! `__unravel__/manifest-pNN.json` and names its shards `shard-pNN-00000.parquet`, so parts can
//! share a folder; [`merge`] and [`merge_part_folders`] (in manifest/merge.rs) join finished parts
//! into one manifest.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};
use super::layout::{meta_dir, meta_or_legacy, META_DIR};
use super::schema::HookInfo;
use super::stats::{HookStats, RunningStats};

mod merge;

pub use merge::{merge, merge_part_folders};

/// Value of the manifest's `format` field.
pub const FORMAT: &str = "unravel-activations";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File name of a whole dataset's manifest, inside the metadata folder [`META_DIR`] (and at the
/// top level of datasets written before it).
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest of the dataset in `dir`: `__unravel__/manifest.json`, else the legacy
/// `manifest.json` where only that exists (where neither does: `__unravel__/manifest.json`).
pub fn manifest_path(dir: &Path) -> PathBuf {
    meta_or_legacy(dir, MANIFEST_FILE)
}

/// What a finished shard holds; recorded in the manifest (written by the shard writer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Path relative to the dataset folder (`/`-separated), e.g. `shard-00012.parquet`.
    pub file: String,
    /// Rows (tokens, special ones included).
    pub rows: u64,
    /// Contexts.
    pub contexts: u64,
    /// Rows flagged special.
    #[serde(default)]
    pub special_rows: u64,
    /// First context id in the shard.
    pub first_context_id: u64,
    /// Last context id in the shard.
    pub last_context_id: u64,
    /// sha256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

/// The model whose activations are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Hub repo id or local path as given (e.g. `gpt2`).
    pub id: String,
    /// Hub revision (branch, tag or commit), if any.
    #[serde(default)]
    pub revision: Option<String>,
    /// Architecture (`gpt2`, `distilbert`).
    pub arch: String,
    /// sha256 of `config.json`.
    pub config_sha256: String,
    /// sha256 of the weights (None for random weights).
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// Whether the weights were randomly initialised.
    pub random_weights: bool,
    /// Seed of the random weights.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// How contexts begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bos {
    /// GPT-2: each context starts with `<|endoftext|>`.
    #[serde(rename = "endoftext")]
    EndOfText,
    /// No BOS token.
    #[serde(rename = "none")]
    None,
    /// DistilBERT: `[CLS] … [SEP]`.
    #[serde(rename = "cls_sep")]
    ClsSep,
}

/// The corpus the contexts were packed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusInfo {
    /// Source files as given.
    pub sources: Vec<String>,
    /// sha256 over the sources' bytes (identifies the corpus; paths may differ between machines).
    pub sha256: String,
    /// `txt`, `jsonl` or `parquet`.
    pub format: String,
    /// Field holding the text (jsonl / parquet).
    #[serde(default)]
    pub text_field: Option<String>,
    /// Documents this run read (a part counts its own share; merging sums them).
    pub documents: u64,
    /// Of those, documents with no text.
    pub empty_documents: u64,
}

/// Which share of the corpus a run extracts: part `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1-based part number.
    pub index: u32,
    /// Number of parts.
    pub count: u32,
}

impl Part {
    /// Part `index` of `count`, checked (1 ≤ index ≤ count).
    pub fn new(index: u32, count: u32) -> Result<Part> {
        if index == 0 || index > count {
            return Err(StoreError::Part { index, count });
        }
        Ok(Part { index, count })
    }

    /// The tag in this part's file names: `p03`.
    pub fn tag(&self) -> String {
        format!("p{:02}", self.index)
    }

    /// Whether this part stores context `id`. Context ids are global (every part packs the same
    /// corpus the same way), so merged parts keep ids unique: part i of N owns `id % N == i - 1`.
    pub fn owns(&self, id: u64) -> bool {
        id % u64::from(self.count) == u64::from(self.index - 1)
    }
}

/// Row counts over all shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// All rows.
    pub rows: u64,
    /// Contexts.
    pub contexts: u64,
    /// Non-special rows (what training and statistics see).
    pub tokens: u64,
    /// Special rows.
    pub special_rows: u64,
}

/// The manifest of a dataset folder (or of one part of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this code.
    pub format_version: u32,
    /// `unravel <version>`.
    pub created_by: String,
    /// The model.
    pub model: ModelInfo,
    /// sha256 of `tokenizer.json`.
    pub tokenizer_sha256: String,
    /// Stored hooks, in column order.
    pub hooks: Vec<HookInfo>,
    /// Context length in tokens.
    pub ctx: usize,
    /// BOS policy.
    pub bos: Bos,
    /// The corpus.
    pub corpus: CorpusInfo,
    /// Which part of a split run this is (None for a whole dataset).
    #[serde(default)]
    pub part: Option<Part>,
    /// Label columns, in column order.
    #[serde(default)]
    pub label_columns: Vec<String>,
    /// Finished shards, in order.
    pub shards: Vec<ShardInfo>,
    /// Sums over `shards`.
    pub totals: Totals,
    /// Per hook: statistics over all non-special rows of `shards` (computed from the f32 values
    /// handed to the writer, before rounding to the storage dtype).
    pub stats: BTreeMap<String, HookStats>,
    /// Token budget of the run (None: the whole corpus).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Where a resumed run continues: the first context id not yet stored.
    pub next_context_id: u64,
    /// Whether the run finished.
    pub complete: bool,
}

impl Manifest {
    /// An empty, incomplete manifest for a new run; set `part`, `label_columns` and `max_tokens`
    /// on the result as needed.
    pub fn new(
        model: ModelInfo,
        tokenizer_sha256: String,
        hooks: Vec<HookInfo>,
        ctx: usize,
        bos: Bos,
        corpus: CorpusInfo,
    ) -> Self {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            created_by: created_by(),
            model,
            tokenizer_sha256,
            hooks,
            ctx,
            bos,
            corpus,
            part: None,
            label_columns: vec![],
            shards: vec![],
            totals: Totals::default(),
            stats: BTreeMap::new(),
            max_tokens: None,
            next_context_id: 0,
            complete: false,
        }
    }

    /// `manifest.json`, or `manifest-p03.json` for part 3 (in the metadata folder).
    pub fn file_name(&self) -> String {
        match &self.part {
            Some(p) => format!("manifest-{}.json", p.tag()),
            None => MANIFEST_FILE.into(),
        }
    }

    /// This run's manifest file in dataset folder `dir`: `__unravel__/<file_name()>`, or the
    /// legacy `<file_name()>` at the top level where only that exists.
    pub fn existing_file(&self, dir: &Path) -> PathBuf {
        meta_or_legacy(dir, &self.file_name())
    }

    /// The file name of shard number `index`: `shard-00012.parquet`, or `shard-p03-00012.parquet`
    /// for part 3.
    pub fn shard_file_name(&self, index: usize) -> String {
        match &self.part {
            Some(p) => format!("shard-{}-{index:05}.parquet", p.tag()),
            None => format!("shard-{index:05}.parquet"),
        }
    }

    /// The hook named `name`, if stored.
    pub fn hook(&self, name: &str) -> Option<&HookInfo> {
        self.hooks.iter().find(|h| h.name == name)
    }

    /// Loads `dir/__unravel__/manifest.json` (or the legacy `dir/manifest.json`).
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = manifest_path(dir);
        if !path.exists() {
            let parts = Manifest::part_files(dir).unwrap_or_default();
            let hint = if parts.is_empty() {
                "is this a folder written by `unravel extract`?".to_string()
            } else {
                format!(
                    "the folder holds {} part manifests ({META_DIR}/manifest-pNN.json); join \
                     them with `unravel merge-manifests` first",
                    parts.len()
                )
            };
            return Err(StoreError::Manifest {
                path,
                message: format!("no manifest found; {hint}"),
            });
        }
        Manifest::load_file(&path)
    }

    /// Loads and checks one manifest file.
    pub fn load_file(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Manifest {
                path: path.to_path_buf(),
                message: format!("not a valid manifest ({e}); the file is corrupt or not ours"),
            })?;
        manifest.check(path)?;
        Ok(manifest)
    }

    /// The part manifests in dataset folder `dir` (`__unravel__/manifest-pNN.json`, and legacy
    /// `manifest-pNN.json` at the top level where no new one has its name), sorted by name.
    pub fn part_files(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = part_files_in(&meta_dir(dir))?;
        for old in part_files_in(dir)? {
            if !files.iter().any(|f| f.file_name() == old.file_name()) {
                files.push(old);
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(files)
    }

    /// Writes `dir/__unravel__/<file_name()>` atomically (tmp, fsync, rename), then removes a
    /// legacy copy at the top level (a resumed old dataset moves into the metadata folder).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = meta_dir(dir).join(self.file_name());
        let json = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Manifest {
            path: path.clone(),
            message: format!("cannot serialise the manifest: {e}"),
        })?;
        crate::io::write_atomic(&path, &json).map_err(|e| StoreError::io(&path, e))?;
        let legacy = dir.join(self.file_name());
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(|e| StoreError::io(&legacy, e))?;
        }
        crate::io::sync_dir(&path);
        crate::io::sync_dir(&meta_dir(dir));
        Ok(())
    }

    /// Sanity checks after loading: format, version, unique names, relative shard paths.
    fn check(&self, path: &Path) -> Result<()> {
        if self.format != FORMAT {
            return Err(manifest_error(
                path,
                format!("format is {:?}, expected {FORMAT:?}", self.format),
            ));
        }
        if self.format_version > FORMAT_VERSION {
            return Err(manifest_error(path, format!(
                "format_version {} was written by a newer unravel (this one reads {FORMAT_VERSION}); upgrade unravel",
                self.format_version
            )));
        }
        let mut names = HashSet::new();
        if let Some(h) = self.hooks.iter().find(|h| !names.insert(&h.name)) {
            return Err(manifest_error(
                path,
                format!("hook {} is listed twice", h.name),
            ));
        }
        for s in &self.shards {
            let p = Path::new(&s.file);
            let escapes = p
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
            if s.file.is_empty() || escapes {
                return Err(manifest_error(
                    path,
                    format!(
                        "shard path {:?} must be relative to the dataset folder, without `..`",
                        s.file
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records a finished shard: appends it, adds its rows to the totals, replaces the statistics
    /// with `stats` (cumulative, all shards so far) and moves `next_context_id` past it.
    pub fn record_shard(&mut self, shard: ShardInfo, stats: &BTreeMap<String, RunningStats>) {
        self.totals.rows += shard.rows;
        self.totals.contexts += shard.contexts;
        self.totals.special_rows += shard.special_rows;
        self.totals.tokens += shard.rows - shard.special_rows;
        if shard.contexts > 0 {
            self.next_context_id = self.next_context_id.max(shard.last_context_id + 1);
        }
        self.shards.push(shard);
        self.stats = stats.iter().map(|(k, v)| (k.clone(), v.stats())).collect();
    }

    /// Checks that a run asking for `requested` settings may continue this (existing) dataset.
    /// On refusal, lists every difference (`; `-separated). Shards, totals, statistics, document
    /// counts and `max_tokens` may differ (a resumed run may extend its budget). `dir` is the
    /// dataset's folder, named in the error.
    pub fn compatible_for_resume(&self, requested: &Manifest, dir: &Path) -> Result<()> {
        let diffs = setting_differences(self, requested, ("dataset has", "this run has"), true);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Incompatible {
                dir: dir.to_path_buf(),
                differences: diffs.join("; "),
            })
        }
    }
}

/// The part manifests (`manifest-pNN.json`) directly in `folder`; none where it does not exist.
fn part_files_in(folder: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(StoreError::io(folder, e)),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("manifest-p") && n.ends_with(".json"))
        })
        .collect())
}

/// A manifest at `path` that fails its sanity checks.
fn manifest_error(path: &Path, message: String) -> StoreError {
    StoreError::Manifest {
        path: path.to_path_buf(),
        message,
    }
}

/// `unravel <version>`.
pub(super) fn created_by() -> String {
    format!("unravel {}", env!("CARGO_PKG_VERSION"))
}

/// Every setting that must agree between two manifests for their shards to form one dataset,
/// as (name, value) pairs of printable values.
fn settings(m: &Manifest, include_part: bool) -> Vec<(&'static str, String)> {
    let hooks: Vec<String> = m.hooks.iter().map(|h| h.to_string()).collect();
    let mut out = vec![
        ("format_version", m.format_version.to_string()),
        ("model.id", format!("{:?}", m.model.id)),
        ("model.revision", format!("{:?}", m.model.revision)),
        ("model.arch", format!("{:?}", m.model.arch)),
        (
            "model.config_sha256",
            format!("{:?}", m.model.config_sha256),
        ),
        (
            "model.weights_sha256",
            format!("{:?}", m.model.weights_sha256),
        ),
        ("model.random_weights", m.model.random_weights.to_string()),
        ("model.seed", format!("{:?}", m.model.seed)),
        ("tokenizer_sha256", format!("{:?}", m.tokenizer_sha256)),
        ("hooks", format!("[{}]", hooks.join(", "))),
        ("ctx", m.ctx.to_string()),
        ("bos", format!("{:?}", m.bos)),
        ("corpus.sha256", format!("{:?}", m.corpus.sha256)),
        ("corpus.format", format!("{:?}", m.corpus.format)),
        ("corpus.text_field", format!("{:?}", m.corpus.text_field)),
        ("label_columns", format!("{:?}", m.label_columns)),
    ];
    if include_part {
        let part = m.part.map(|p| format!("{} of {}", p.index, p.count));
        out.push(("part", part.unwrap_or_else(|| "none".into())));
    }
    out
}

/// The settings that differ, as `name: <la> x, <lb> y`.
pub(super) fn setting_differences(
    a: &Manifest,
    b: &Manifest,
    (la, lb): (&str, &str),
    include_part: bool,
) -> Vec<String> {
    settings(a, include_part)
        .into_iter()
        .zip(settings(b, include_part))
        .filter(|(x, y)| x.1 != y.1)
        .map(|((name, x), (_, y))| format!("{name}: {la} {x}, {lb} {y}"))
        .collect()
}
