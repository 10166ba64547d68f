//! Writing a whole dataset: batches of contexts in, shards of about `shard_rows` rows out, the
//! manifest saved after every shard, and resuming an interrupted run.
//!
//! Context ids are the caller's, but must continue from [`DatasetWriter::next_context_id`]: make
//! them `next_context_id() + i` for the i-th context of the packed stream (of this part), so a
//! resumed run skips exactly the contexts already stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use super::manifest::Manifest;
use super::shard::{
    ContextBatch, ShardWriter, ShardWriterBuilder, DEFAULT_ROW_GROUP_ROWS, DEFAULT_ZSTD_LEVEL,
};
use super::stats::RunningStats;

/// Rows per shard unless told otherwise (8 row groups of 8192).
pub const DEFAULT_SHARD_ROWS: usize = 65_536;

/// Sizes and compression of the shards a [`DatasetWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// A shard is closed after the batch that brings it to at least this many rows.
    pub shard_rows: usize,
    /// Rows per parquet row group.
    pub row_group_rows: usize,
    /// zstd level (1–22); 0 stores shards uncompressed.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            shard_rows: DEFAULT_SHARD_ROWS,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// Writes a dataset folder: shards plus manifest. See the module docs.
pub struct DatasetWriter {
    dir: PathBuf,
    manifest: Manifest,
    builder: ShardWriterBuilder,
    shard_rows: usize,
    current: Option<ShardWriter>,
    /// Statistics of the shards in the manifest (the open shard keeps its own).
    committed: BTreeMap<String, RunningStats>,
    /// Set after a failed write: the in-memory state no longer matches the disk.
    failed: bool,
}

impl DatasetWriter {
    /// Starts a new dataset in `dir` (created if needed) from a header manifest (model, hooks,
    /// corpus, …; its shards, totals and statistics are reset). Refuses a folder that already
    /// holds this run's manifest.
    pub fn create(dir: &Path, mut manifest: Manifest, options: WriterOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let path = manifest.existing_file(dir);
        if path.exists() {
            return Err(StoreError::Manifest {
                path,
                message: "a dataset already exists here; resume it, or choose a new folder".into(),
            });
        }
        manifest.shards.clear();
        manifest.totals = Default::default();
        manifest.stats.clear();
        manifest.complete = false;
        // Ids are global; every part starts scanning at context 0 and keeps the ones it owns.
        manifest.next_context_id = 0;
        remove_own_leftovers(dir, &manifest)?;
        manifest.save(dir)?;
        Ok(Self::with_manifest(dir, manifest, options))
    }

    /// Continues the dataset in `dir` written by an earlier run with the same settings as
    /// `requested` (refused with the list of differences otherwise). Removes this run's
    /// leftover `.tmp` files and unlisted shards; `requested.max_tokens` replaces the old budget.
    pub fn resume(dir: &Path, requested: &Manifest, options: WriterOptions) -> Result<Self> {
        let path = requested.existing_file(dir);
        if !path.exists() {
            return Err(StoreError::Manifest {
                path,
                message: "nothing to resume: no manifest here; start a new run instead".into(),
            });
        }
        let mut manifest = Manifest::load_file(&path)?;
        manifest.compatible_for_resume(requested, dir)?;
        for s in &manifest.shards {
            let shard = dir.join(&s.file);
            if !shard.is_file() {
                return Err(StoreError::Format {
                    path: shard,
                    message: format!(
                        "listed in {} but missing; restore it or start a new run",
                        path.display()
                    ),
                });
            }
        }
        remove_own_leftovers(dir, &manifest)?;
        manifest.max_tokens = requested.max_tokens;
        let mut writer = Self::with_manifest(dir, manifest, options);
        for (name, stats) in &writer.manifest.stats {
            writer
                .committed
                .insert(name.clone(), RunningStats::from_stats(stats));
        }
        Ok(writer)
    }

    fn with_manifest(dir: &Path, manifest: Manifest, options: WriterOptions) -> Self {
        let builder = ShardWriter::builder(manifest.hooks.clone())
            .label_columns(manifest.label_columns.clone())
            .row_group_rows(options.row_group_rows)
            .zstd_level(options.zstd_level);
        let committed = manifest
            .hooks
            .iter()
            .map(|h| (h.name.clone(), RunningStats::new(h.d)))
            .collect();
        DatasetWriter {
            dir: dir.to_path_buf(),
            committed,
            manifest,
            builder,
            shard_rows: options.shard_rows.max(1),
            current: None,
            failed: false,
        }
    }

    /// The manifest as last saved plus in-memory changes.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// For fields the caller tracks (e.g. `corpus.documents`); saved with the next shard. Do not
    /// edit shards, totals or statistics.
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// The first context id not yet written.
    pub fn next_context_id(&self) -> u64 {
        self.current
            .as_ref()
            .and_then(|s| s.last_context_id())
            .map_or(self.manifest.next_context_id, |id| id + 1)
    }

    /// Non-special rows stored so far, the unfinished shard included (for token budgets).
    pub fn tokens_written(&self) -> u64 {
        let open = self.current.as_ref().and_then(|s| s.stats().first());
        self.manifest.totals.tokens + open.map_or(0, RunningStats::count)
    }

    /// Appends whole contexts; closes the shard (and saves the manifest) once it holds at least
    /// `shard_rows` rows.
    pub fn write_batch(&mut self, batch: &ContextBatch) -> Result<()> {
        self.write_batches(std::slice::from_ref(batch))
    }

    /// Appends the parts of one batch (consecutive whole contexts) to the same shard, as
    /// [`DatasetWriter::write_batch`] would the whole batch: the shard is closed only after the
    /// last part, so shard boundaries do not depend on how the batch was split.
    pub fn write_batches(&mut self, parts: &[ContextBatch]) -> Result<()> {
        for (i, part) in parts.iter().enumerate() {
            self.write_part(part, i + 1 == parts.len())?;
        }
        Ok(())
    }

    fn write_part(&mut self, batch: &ContextBatch, last: bool) -> Result<()> {
        if self.failed {
            return Err(StoreError::Batch {
                path: self.dir.clone(),
                message: "an earlier write failed; resume the run to continue".into(),
            });
        }
        if let Some(&first) = batch.context_ids.first() {
            let next = self.next_context_id();
            if first < next {
                return Err(StoreError::Batch {
                    path: self.dir.clone(),
                    message: format!(
                        "context id {first} is already stored (the dataset continues at {next})"
                    ),
                });
            }
        }
        let result = self.write_inner(batch, last);
        if matches!(result, Err(ref e) if !matches!(e, StoreError::Batch { .. })) {
            self.failed = true;
            self.current = None;
        }
        result
    }

    fn write_inner(&mut self, batch: &ContextBatch, last: bool) -> Result<()> {
        let shard = match self.current.as_mut() {
            Some(s) => s,
            None => {
                let name = self.manifest.shard_file_name(self.manifest.shards.len());
                self.current
                    .insert(self.builder.create(&self.dir.join(name))?)
            }
        };
        shard.write_batch(batch)?;
        self.manifest.complete = false;
        if last && shard.rows() >= self.shard_rows as u64 {
            self.finish_shard()?;
        }
        Ok(())
    }

    /// Finishes the open shard, commits its statistics and saves the manifest.
    fn finish_shard(&mut self) -> Result<()> {
        let Some(shard) = self.current.take() else {
            return Ok(());
        };
        if shard.rows() == 0 {
            return Ok(()); // dropping it removes its .tmp
        }
        let stats = shard.stats().to_vec();
        let info = shard.finish()?;
        for (hook, shard_stats) in self.manifest.hooks.iter().zip(&stats) {
            if let Some(committed) = self.committed.get_mut(&hook.name) {
                committed
                    .merge(shard_stats)
                    .map_err(|m| StoreError::Batch {
                        path: self.dir.clone(),
                        message: m.to_string(),
                    })?;
            }
        }
        self.manifest.record_shard(info, &self.committed);
        self.manifest.save(&self.dir)
    }

    /// Finishes the last shard, marks the dataset complete and saves the manifest.
    pub fn finish(mut self) -> Result<Manifest> {
        if self.failed {
            return Err(StoreError::Batch {
                path: self.dir.clone(),
                message: "an earlier write failed; resume the run to finish it".into(),
            });
        }
        self.finish_shard()?;
        self.manifest.complete = true;
        self.manifest.save(&self.dir)?;
        Ok(self.manifest.clone())
    }
}

/// Removes this run's `.tmp` files and shard files the manifest does not list (left by a crash
/// between a shard's rename and the manifest's save). Other parts' files are left alone.
fn remove_own_leftovers(dir: &Path, manifest: &Manifest) -> Result<()> {
    let listed: Vec<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `.shard-….parquet.tmp`, or `shard-….parquet.tmp` from versions before the dot.
        let tmp = name.strip_suffix(".tmp");
        let shard_name = tmp.map_or(name.as_str(), |n| n.strip_prefix('.').unwrap_or(n));
        let own = is_own_shard(shard_name, manifest);
        if own && (tmp.is_some() || !listed.contains(&name.as_str())) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Whether `name` is a shard file name of this run (`shard-00012.parquet` without a part,
/// `shard-p03-00012.parquet` for part 3).
fn is_own_shard(name: &str, manifest: &Manifest) -> bool {
    let prefix = match manifest.part {
        Some(p) => format!("shard-{}-", p.tag()),
        None => "shard-".into(),
    };
    name.strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(".parquet"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
