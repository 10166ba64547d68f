//! Opening, checking and reading a dataset folder. Reads project: only the requested columns'
//! bytes are read and decoded (a hook column plus `special`), one row group at a time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use super::error::{ColumnError, Result, StoreError};
use super::integrity::{self, ReadOptions};
use super::manifest::Manifest;
use super::schema::{decode_hook, HookInfo, FIXED_COLUMNS, SPECIAL};

/// Rows per decoded Arrow batch: small enough that the parquet reader's buffers are reused from
/// the allocator's free lists (whole row groups at once cost page faults on every read).
const READ_BATCH_ROWS: usize = 1024;

/// A dataset folder: its manifest and shards, read under one [`ReadOptions`]. Every read goes
/// through the checks of [`super::integrity`] (complete, shard bytes, finite values).
#[derive(Debug, Clone)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    options: ReadOptions,
    /// Rows dropped for NaN/Inf (with `skip_nonfinite`), over every reader of this dataset.
    dropped: Arc<AtomicU64>,
}

impl Dataset {
    /// Opens `dir` strictly: an incomplete dataset and NaN/Inf values are refused.
    pub fn open(dir: &Path) -> Result<Dataset> {
        Dataset::open_with(dir, ReadOptions::default())
    }

    /// Loads the manifest, refuses an incomplete dataset unless `options` allow it, and
    /// checks that every listed shard exists. Files the manifest does not list (leftover `.tmp`
    /// files, other runs' shards, lock files) are ignored.
    pub fn open_with(dir: &Path, options: ReadOptions) -> Result<Dataset> {
        let manifest = Manifest::load(dir)?;
        integrity::check_complete(dir, &manifest, options)?;
        let dataset = Dataset {
            dir: dir.to_path_buf(),
            manifest,
            options,
            dropped: Arc::default(),
        };
        for i in 0..dataset.shard_count() {
            let path = dataset.shard_path(i);
            if !path.is_file() {
                return Err(StoreError::format(
                    path,
                    "listed in the manifest but missing; restore it or re-extract the dataset",
                ));
            }
        }
        Ok(dataset)
    }

    /// The options it is read with.
    pub fn options(&self) -> ReadOptions {
        self.options
    }

    /// Rows dropped so far for holding NaN/Inf values (only with `skip_nonfinite`).
    pub fn nonfinite_rows_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hashes the given shards (in parallel) unless this process already checked them: commands
    /// that open many shards at once call this first so the check runs on every core.
    pub fn check_shards(&self, shards: &[usize]) -> Result<()> {
        let results: Vec<Result<()>> = shards
            .par_iter()
            .map(|&i| self.check_shard_bytes(i))
            .collect();
        results.into_iter().collect()
    }

    fn check_shard_bytes(&self, i: usize) -> Result<()> {
        let info = &self.manifest.shards[i];
        integrity::check_shard_once(&self.shard_path(i), &info.sha256, info.bytes)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.manifest.shards.len()
    }

    /// Path of shard `i`.
    pub fn shard_path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.manifest.shards[i].file)
    }

    /// The stored hook named `name`, or an error listing the stored ones.
    pub fn hook(&self, name: &str) -> Result<&HookInfo> {
        self.manifest
            .hook(name)
            .ok_or_else(|| StoreError::UnknownHook {
                dir: self.dir.clone(),
                name: name.into(),
                available: self
                    .manifest
                    .hooks
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Splits the shards into (training, evaluation): the last `eval_shards` shards are held out.
    /// Deterministic; refused when nothing would be left for training.
    pub fn split(&self, eval_shards: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let n = self.shard_count();
        if eval_shards > 0 && eval_shards >= n {
            return Err(StoreError::Loader(format!(
                "cannot hold out {eval_shards} evaluation shards: the dataset in {} has {n}; \
                 keep at least one for training",
                self.dir.display()
            )));
        }
        let cut = n - eval_shards;
        Ok(((0..cut).collect(), (cut..n).collect()))
    }

    /// Re-hashes every shard (in parallel) and checks its footer, row count and hook columns
    /// against the manifest. The first failing shard (in shard order) is reported.
    pub fn verify(&self) -> Result<()> {
        let results: Vec<Result<()>> = (0..self.shard_count())
            .into_par_iter()
            .map(|i| self.verify_shard(i))
            .collect();
        results.into_iter().collect()
    }

    /// Checks one shard: size, sha256, footer, rows, columns.
    pub fn verify_shard(&self, i: usize) -> Result<()> {
        let info = &self.manifest.shards[i];
        let path = self.shard_path(i);
        // Hashes the shard unless this process already did (then opens it without a second pass).
        let reader = self.shard_reader(i)?;
        let rows: usize = reader.row_groups().iter().sum();
        if rows as u64 != info.rows {
            return Err(StoreError::format(
                path,
                format!("holds {rows} rows, the manifest says {}", info.rows),
            ));
        }
        Ok(())
    }

    /// Opens shard `i`: checks its bytes (once per process), reads its footer and checks its
    /// columns against the manifest.
    pub fn shard_reader(&self, i: usize) -> Result<ShardReader> {
        self.check_shard_bytes(i)?;
        let mut reader = ShardReader::open(&self.shard_path(i), &self.manifest)?;
        reader.skip_nonfinite = self.options.skip_nonfinite.then(|| self.dropped.clone());
        Ok(reader)
    }
}

/// Rows of one hook read from one row group, decoded to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRows {
    /// Values per row.
    pub d: usize,
    /// Rows kept.
    pub rows: usize,
    /// `rows × d` values, row-major.
    pub values: Vec<f32>,
    /// Rows removed for holding NaN/Inf (only when read with `skip_nonfinite`).
    pub dropped: usize,
}

/// One open shard: its parsed footer, reused for every row group read.
#[derive(Debug, Clone)]
pub struct ShardReader {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
    row_groups: Vec<usize>,
    /// Drop rows holding NaN/Inf (counting them here) instead of refusing them.
    skip_nonfinite: Option<Arc<AtomicU64>>,
}

impl ShardReader {
    /// Parses the footer of `path` and checks the columns the manifest promises.
    /// Crate-private: readers come from [`Dataset::shard_reader`], which checks the shard first.
    pub(crate) fn open(path: &Path, manifest: &Manifest) -> Result<ShardReader> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| StoreError::parquet(path, e))?;
        check_schema(metadata.schema(), manifest).map_err(|e| StoreError::column(path, e))?;
        let row_groups = metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as usize)
            .collect();
        Ok(ShardReader {
            path: path.to_path_buf(),
            metadata,
            row_groups,
            skip_nonfinite: None,
        })
    }

    /// The shard's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows of each row group.
    pub fn row_groups(&self) -> &[usize] {
        &self.row_groups
    }

    /// Reads the named top-level columns of one row group (projection: other columns are
    /// neither read nor decoded). Columns come back in file order, usually in one batch.
    pub fn read_columns(&self, row_group: usize, columns: &[&str]) -> Result<Vec<RecordBatch>> {
        if row_group >= self.row_groups.len() {
            return Err(StoreError::format(
                &self.path,
                format!(
                    "has {} row groups, asked for number {row_group}",
                    self.row_groups.len()
                ),
            ));
        }
        let schema = self.metadata.schema();
        let mut roots = Vec::with_capacity(columns.len());
        for name in columns {
            let index = schema
                .index_of(name)
                .map_err(|_| StoreError::format(&self.path, format!("has no column {name}")))?;
            roots.push(index);
        }
        let file = File::open(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone());
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_row_groups(vec![row_group])
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| StoreError::parquet(&self.path, e))?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Arrow {
                path: self.path.clone(),
                source: e,
            })
    }

    /// Reads one hook of one row group as f32, without special-token rows unless
    /// `include_special`.
    pub fn read_hook(
        &self,
        hook: &HookInfo,
        row_group: usize,
        include_special: bool,
    ) -> Result<HookRows> {
        self.read_hook_checked(hook, row_group, include_special, true)
    }

    /// The non-special rows of several hooks of one row group, row-aligned across hooks: a row
    /// holding NaN/Inf in any hook is refused, or (with `skip_nonfinite`) removed from every
    /// hook and counted once. Also returns the removed rows' indices among the row group's
    /// non-special rows, so that columns read beside the hooks can drop the same rows.
    pub fn read_hooks_aligned(
        &self,
        hooks: &[HookInfo],
        row_group: usize,
    ) -> Result<(Vec<HookRows>, Vec<usize>)> {
        let mut reads = Vec::with_capacity(hooks.len());
        let mut bad = std::collections::BTreeSet::new();
        for hook in hooks {
            let read = self.read_hook_checked(hook, row_group, false, false)?;
            let rows = integrity::nonfinite_rows(&read.values, hook.d);
            if self.skip_nonfinite.is_none() {
                self.nonfinite_policy(hook, row_group, rows.len())?;
            }
            bad.extend(rows);
            reads.push(read);
        }
        let bad: Vec<usize> = bad.into_iter().collect();
        if let (Some(hook), false) = (hooks.first(), bad.is_empty()) {
            self.nonfinite_policy(hook, row_group, bad.len())?;
            for (read, hook) in reads.iter_mut().zip(hooks) {
                integrity::remove_rows(&mut read.values, hook.d, &bad);
                read.rows -= bad.len();
                read.dropped = bad.len();
            }
        }
        Ok((reads, bad))
    }

    /// Every row of one hook of one row group, NaN/Inf included: for a copy of the whole row
    /// group, whose caller applies [`ShardReader::nonfinite_policy`] to the rows of all hooks.
    pub(crate) fn read_hook_unchecked(
        &self,
        hook: &HookInfo,
        row_group: usize,
    ) -> Result<HookRows> {
        self.read_hook_checked(hook, row_group, true, false)
    }

    /// What a caller reading several hooks at once does with `bad` rows (holding NaN/Inf in
    /// `hook`): an error when the dataset is read strictly; `Ok` (rows counted as dropped, to be
    /// removed by the caller) with `skip_nonfinite`.
    pub(crate) fn nonfinite_policy(
        &self,
        hook: &HookInfo,
        row_group: usize,
        bad: usize,
    ) -> Result<()> {
        match &self.skip_nonfinite {
            _ if bad == 0 => Ok(()),
            Some(dropped) => {
                dropped.fetch_add(bad as u64, Ordering::Relaxed);
                Ok(())
            }
            None => Err(StoreError::NonFinite {
                path: self.path.clone(),
                hook: hook.name.clone(),
                rows: bad,
                row_group,
            }),
        }
    }

    fn read_hook_checked(
        &self,
        hook: &HookInfo,
        row_group: usize,
        include_special: bool,
        check: bool,
    ) -> Result<HookRows> {
        let batches = self.read_columns(row_group, &[SPECIAL, &hook.name])?;
        let bad = |m: String| StoreError::format(&self.path, m);
        let mut values = Vec::with_capacity(self.row_groups[row_group] * hook.d);
        let mut dropped = 0;
        for batch in &batches {
            let start = values.len();
            let keep: Option<Vec<bool>> = if include_special {
                None
            } else {
                let special = batch
                    .column_by_name(SPECIAL)
                    .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
                    .ok_or_else(|| bad("column special is not Boolean".into()))?;
                Some((0..special.len()).map(|i| !special.value(i)).collect())
            };
            let column = batch
                .column_by_name(&hook.name)
                .ok_or_else(|| bad(format!("has no column {}", hook.name)))?;
            decode_hook(column.as_ref(), hook, keep.as_deref(), &mut values)
                .map_err(|e| StoreError::column(&self.path, e))?;
            if check {
                dropped += self
                    .finite_or_dropped(hook, row_group, &mut values, start)?
                    .len();
            }
        }
        Ok(HookRows {
            d: hook.d,
            rows: values.len() / hook.d.max(1),
            values,
            dropped,
        })
    }

    /// The check every decoded hook value passes: rows `values[start..]` holding NaN/Inf are
    /// refused, or removed (and counted) when the dataset is read with `skip_nonfinite`.
    /// Returns the removed rows, relative to `start`.
    pub(super) fn finite_or_dropped(
        &self,
        hook: &HookInfo,
        row_group: usize,
        values: &mut Vec<f32>,
        start: usize,
    ) -> Result<Vec<usize>> {
        let bad = integrity::nonfinite_rows(&values[start..], hook.d);
        if bad.is_empty() {
            return Ok(bad);
        }
        let Some(dropped) = &self.skip_nonfinite else {
            return Err(StoreError::NonFinite {
                path: self.path.clone(),
                hook: hook.name.clone(),
                rows: bad.len(),
                row_group,
            });
        };
        let mut tail = values.split_off(start);
        integrity::remove_rows(&mut tail, hook.d, &bad);
        values.extend_from_slice(&tail);
        dropped.fetch_add(bad.len() as u64, Ordering::Relaxed);
        Ok(bad)
    }
}

/// The shard must hold the fixed columns, the manifest's label columns and its hooks with the
/// manifest's widths and dtypes.
fn check_schema(schema: &Schema, manifest: &Manifest) -> Result<(), ColumnError> {
    for name in FIXED_COLUMNS
        .iter()
        .copied()
        .chain(manifest.label_columns.iter().map(|s| s.as_str()))
    {
        if schema.field_with_name(name).is_err() {
            return Err(ColumnError::Missing {
                column: name.to_string(),
            });
        }
    }
    for hook in &manifest.hooks {
        let field = schema
            .field_with_name(&hook.name)
            .map_err(|_| ColumnError::Missing {
                column: hook.name.clone(),
            })?;
        let ok = matches!(field.data_type(), DataType::FixedSizeList(item, n)
            if *n as usize == hook.d && item.data_type() == &hook.dtype.item_type());
        if !ok {
            return Err(ColumnError::Schema {
                column: hook.name.clone(),
                found: field.data_type().clone(),
                item: hook.dtype.item_type(),
                d: hook.d,
            });
        }
    }
    Ok(())
}
