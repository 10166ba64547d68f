//! Writing one parquet shard of whole contexts.
//!
//! ```no_run
//! use unravel::store::{ContextBatch, HookInfo, ShardWriter, StorageDtype};
//! # fn main() -> unravel::store::Result<()> {
//! let hooks = vec![HookInfo { name: "blocks.0.hook_resid_post".into(), d: 2, dtype: StorageDtype::F16 }];
//! let mut writer = ShardWriter::builder(hooks).create("out/shard-00000.parquet".as_ref())?;
//! let acts = [0.1f32, 0.2, 0.3, 0.4]; // 2 rows × d=2
//! writer.write_batch(&ContextBatch {
//!     context_ids: &[0, 0],
//!     positions: &[0, 1],
//!     token_ids: &[50256, 464],
//!     tokens: &["<|endoftext|>".into(), "The".into()],
//!     special: &[true, false],
//!     labels: &[],
//!     hooks: &[&acts],
//! })?;
//! let info = writer.finish()?; // out/shard-00000.parquet now exists, with its sha256 in `info`
//! # Ok(()) }
//! ```
//!
//! Bytes go to `.shard-NNNNN.parquet.tmp` and are hashed as they are written; `finish` writes the
//! footer, fsyncs and renames. A crash before `finish` leaves only the `.tmp` file; an error or a
//! drop before `finish` removes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_buffer::{Buffer, MutableBuffer};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::encode::RowGroupEncoder;
use super::error::{Result, StoreError};
use super::manifest::{ShardInfo, FORMAT, FORMAT_VERSION};
use super::schema::{encode_hook, shard_schema, EncodeError, HookInfo, StorageDtype, ITEM, TOKEN};
use super::shard_file::{ShardFile, Written};
use super::stats::RunningStats;

mod batch;

use batch::batch_error;
pub use batch::ContextBatch;

/// Rows per parquet row group unless the builder says otherwise: the loader's shuffle unit.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 8192;
/// zstd level unless the builder says otherwise. Float activations compress through zstd's
/// entropy coder, not its match finder: on GPT-2 f16 hook pages level 1 kept 90.9% of the bytes
/// against level 3's 90.8%, compressing at 898 MB/s against 649 (BENCHMARKS.md).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Settings of a [`ShardWriter`]; the defaults live here and only here.
#[derive(Debug, Clone)]
pub struct ShardWriterBuilder {
    hooks: Vec<HookInfo>,
    label_columns: Vec<String>,
    row_group_rows: usize,
    zstd_level: i32,
}

impl ShardWriterBuilder {
    /// Label columns (nullable Utf8), written after `special` in this order.
    pub fn label_columns(mut self, names: Vec<String>) -> Self {
        self.label_columns = names;
        self
    }

    /// Rows per row group (default [`DEFAULT_ROW_GROUP_ROWS`]; 0 is taken as 1).
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// zstd compression level, 1–22 (default [`DEFAULT_ZSTD_LEVEL`]); 0 writes uncompressed.
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// The parquet writer properties: zstd (or none); dictionaries only for strings; no
    /// statistics and (f32, bf16) BYTE_STREAM_SPLIT for hook values.
    fn properties(&self, path: &Path) -> Result<WriterProperties> {
        let compression = match self.zstd_level {
            0 => Compression::UNCOMPRESSED,
            level => Compression::ZSTD(
                ZstdLevel::try_new(level).map_err(|e| StoreError::parquet(path, e))?,
            ),
        };
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from(TOKEN), true)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_created_by(format!("unravel {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("unravel.format".into(), FORMAT.to_string()),
                KeyValue::new("unravel.format_version".into(), FORMAT_VERSION.to_string()),
            ]));
        for label in &self.label_columns {
            props = props.set_column_dictionary_enabled(ColumnPath::from(label.as_str()), true);
        }
        for hook in &self.hooks {
            // Leaf path of a list column: <name>.list.<item>; built from parts because hook
            // names contain dots.
            let leaf = ColumnPath::new(vec![hook.name.clone(), "list".into(), ITEM.into()]);
            props = props
                .set_column_encoding(leaf.clone(), hook_encoding(hook.dtype))
                .set_column_statistics_enabled(leaf, EnabledStatistics::None);
        }
        Ok(props.build())
    }

    /// Starts a shard that will appear at `path` when finished (written to `path` + `.tmp`).
    pub fn create(&self, path: &Path) -> Result<ShardWriter> {
        validate_names(path, &self.hooks, &self.label_columns)?;
        let tmp = tmp_path(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let props = self.properties(path)?;
        let sink = ShardFile::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let schema = shard_schema(&self.hooks, &self.label_columns);
        let encoder = RowGroupEncoder::try_new(sink, schema.clone(), props, self.row_group_rows);
        let writer = match encoder {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(StoreError::parquet(&tmp, e));
            }
        };
        Ok(ShardWriter {
            path: path.to_path_buf(),
            tmp,
            writer: Some(writer),
            schema,
            hooks: self.hooks.clone(),
            label_columns: self.label_columns.clone(),
            stats: self.hooks.iter().map(|h| RunningStats::new(h.d)).collect(),
            spare: Vec::new(),
            rows: 0,
            contexts: 0,
            special_rows: 0,
            first_context_id: None,
            last_context_id: None,
        })
    }
}

/// Encoding of a hook's values. BYTE_STREAM_SPLIT groups exponent bytes so zstd compresses them,
/// but DuckDB (2.0) reads it only for FLOAT/DOUBLE/INT32/INT64: float16 (FIXED_LEN_BYTE_ARRAY(2))
/// stays PLAIN so every reader can open every shard. bf16 is UInt16, physically INT32.
fn hook_encoding(dtype: StorageDtype) -> Encoding {
    match dtype {
        StorageDtype::F16 => Encoding::PLAIN,
        StorageDtype::Bf16 | StorageDtype::F32 => Encoding::BYTE_STREAM_SPLIT,
    }
}

/// Column names must be unique and must not shadow the fixed columns.
fn validate_names(path: &Path, hooks: &[HookInfo], labels: &[String]) -> Result<()> {
    let mut seen: Vec<&str> = super::schema::FIXED_COLUMNS.to_vec();
    for name in labels.iter().chain(hooks.iter().map(|h| &h.name)) {
        if seen.contains(&name.as_str()) {
            return Err(StoreError::format(
                path,
                format!("column name {name:?} is used twice; rename the label or hook"),
            ));
        }
        seen.push(name);
    }
    if let Some(h) = hooks.iter().find(|h| h.d == 0 || h.d > i32::MAX as usize) {
        return Err(StoreError::format(
            path,
            format!("hook {} has width {}; it must be at least 1", h.name, h.d),
        ));
    }
    Ok(())
}

/// `shard-00012.parquet` → `.shard-00012.parquet.tmp` (the dot keeps parquet readers that take
/// the whole folder from reading a half-written shard).
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes one shard; see the module docs. Create it with [`ShardWriter::builder`].
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    /// None once finished or after a failed write.
    writer: Option<RowGroupEncoder<ShardFile>>,
    schema: arrow_schema::SchemaRef,
    hooks: Vec<HookInfo>,
    label_columns: Vec<String>,
    /// Per hook, statistics of the rows written (see [`ShardWriter::stats`]).
    stats: Vec<RunningStats>,
    /// Hook value buffers of the last batch, handed back once it was encoded, for the next.
    spare: Vec<MutableBuffer>,
    rows: u64,
    contexts: u64,
    special_rows: u64,
    first_context_id: Option<u64>,
    last_context_id: Option<u64>,
}

impl ShardWriter {
    /// A builder for shards holding `hooks` (in column order), with default settings.
    pub fn builder(hooks: Vec<HookInfo>) -> ShardWriterBuilder {
        ShardWriterBuilder {
            hooks,
            label_columns: vec![],
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }

    /// The final path of the shard.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The last context id written, if any (the next batch must start above it).
    pub fn last_context_id(&self) -> Option<u64> {
        self.last_context_id
    }

    /// Appends whole contexts. A malformed batch is refused before anything is written; an IO
    /// error removes the `.tmp` file and leaves the writer unusable.
    pub fn write_batch(&mut self, batch: &ContextBatch) -> Result<()> {
        let summary = batch.check(
            &self.path,
            &self.hooks,
            &self.label_columns,
            self.last_context_id,
        )?;
        let mut batch_stats: Vec<RunningStats> =
            self.hooks.iter().map(|h| RunningStats::new(h.d)).collect();
        let record = self.record_batch(batch, &mut batch_stats)?;
        // Our handles on the hook value buffers: once the encoder has dropped the batch they
        // are the only ones, and the next batch reuses the memory.
        let lent: Vec<Buffer> = record.columns()[record.num_columns() - self.hooks.len()..]
            .iter()
            .filter_map(|c| c.as_fixed_size_list_opt())
            .filter_map(|list| list.values().to_data().buffers().first().cloned())
            .collect();
        // Counted before the write: a failed write leaves the writer unusable anyway.
        for (total, stats) in self.stats.iter_mut().zip(&batch_stats) {
            total
                .merge(stats)
                .map_err(|e| batch_error(&self.path, e.to_string()))?;
        }
        let written = match self.writer.as_mut() {
            Some(writer) => writer.write(record),
            None => {
                return Err(StoreError::Batch {
                    path: self.path.clone(),
                    message: "the writer already failed".into(),
                })
            }
        };
        if let Err(source) = written {
            self.abort();
            return Err(StoreError::Write {
                path: self.tmp.clone(),
                source,
            });
        }
        self.spare
            .extend(lent.into_iter().filter_map(|b| b.into_mutable().ok()));
        self.rows += batch.rows() as u64;
        self.contexts += summary.contexts;
        self.special_rows += batch.special.iter().filter(|&&s| s).count() as u64;
        if summary.contexts > 0 {
            self.first_context_id.get_or_insert(summary.first);
            self.last_context_id = Some(summary.last);
        }
        Ok(())
    }

    /// The Arrow record batch of `b` (already validated); adds each hook's non-special rows to
    /// its `stats` on the way. Refuses a value the storage dtype cannot hold.
    fn record_batch(
        &mut self,
        b: &ContextBatch,
        stats: &mut [RunningStats],
    ) -> Result<RecordBatch> {
        let arrow = |source| StoreError::Arrow {
            path: self.path.clone(),
            source,
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(b.context_ids.to_vec())),
            Arc::new(UInt32Array::from(b.positions.to_vec())),
            Arc::new(UInt32Array::from(b.token_ids.to_vec())),
            Arc::new(StringArray::from_iter_values(b.tokens)),
            Arc::new(BooleanArray::from(b.special.to_vec())),
        ];
        for col in b.labels {
            columns.push(Arc::new(StringArray::from_iter(
                col.iter().map(|v| v.as_deref()),
            )));
        }
        for ((hook, values), stats) in self.hooks.iter().zip(b.hooks).zip(stats) {
            let storage = self.spare.pop().unwrap_or_else(|| MutableBuffer::new(0));
            let column = encode_hook(hook, values, b.special, stats, storage);
            columns.push(column.map_err(|e| match e {
                EncodeError::Arrow(source) => arrow(source),
                EncodeError::Unstorable { row, value } => StoreError::Batch {
                    path: self.path.clone(),
                    message: if value.is_finite() {
                        format!(
                            "hook {} row {row} holds {value}, beyond the range of {}: store it \
                             as f32 (--store-dtype f32), or find the overflow upstream",
                            hook.name, hook.dtype
                        )
                    } else {
                        format!(
                            "hook {} row {row} holds {value}: shards store finite values only; \
                             find where the NaN/Inf comes from upstream (model dtype, inputs)",
                            hook.name
                        )
                    },
                },
            })?);
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow)
    }

    /// Statistics of the non-special rows written so far, one per hook in column order
    /// (computed from the f32 values, before rounding to the storage dtype).
    pub fn stats(&self) -> &[RunningStats] {
        &self.stats
    }

    /// Writes the footer, fsyncs, renames `.tmp` to the final name and returns what the shard
    /// holds. The shard's `file` is its file name; the dataset writer makes it relative.
    pub fn finish(mut self) -> Result<ShardInfo> {
        let Some(writer) = self.writer.take() else {
            return Err(StoreError::Batch {
                path: self.path.clone(),
                message: "the writer already failed".into(),
            });
        };
        let sink = match writer.finish() {
            Ok(sink) => sink,
            Err(source) => {
                self.abort();
                return Err(StoreError::Write {
                    path: self.tmp.clone(),
                    source,
                });
            }
        };
        // Writes out the last buffered bytes (a full disk shows up here or in the fsync).
        let written = sink.finish();
        let renamed = match written {
            Ok(w) => std::fs::rename(&self.tmp, &self.path).map(|()| w),
            Err(e) => Err(e),
        };
        let Written { sha256, bytes } = match renamed {
            Ok(w) => w,
            Err(e) => {
                self.abort();
                return Err(StoreError::io(&self.tmp, e));
            }
        };
        crate::io::sync_dir(&self.path);
        let file = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ShardInfo {
            file,
            rows: self.rows,
            contexts: self.contexts,
            special_rows: self.special_rows,
            first_context_id: self.first_context_id.unwrap_or(0),
            last_context_id: self.last_context_id.unwrap_or(0),
            sha256: hex::encode(sha256),
            bytes,
        })
    }

    /// Drops the parquet writer and removes the `.tmp` file.
    fn abort(&mut self) {
        self.writer = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Drop for ShardWriter {
    /// An unfinished shard is garbage: remove its `.tmp` file.
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_value_buffers_come_back_for_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let hooks: Vec<HookInfo> = [StorageDtype::F16, StorageDtype::Bf16, StorageDtype::F32]
            .into_iter()
            .enumerate()
            .map(|(i, dtype)| HookInfo {
                name: format!("h{i}"),
                d: 4,
                dtype,
            })
            .collect();
        let path = dir.path().join("shard-00000.parquet");
        let mut writer = ShardWriter::builder(hooks).create(&path).unwrap();
        let acts: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let tokens = ["a".to_string(), "b".to_string()];
        for id in [0, 1] {
            writer
                .write_batch(&ContextBatch {
                    context_ids: &[id, id],
                    positions: &[0, 1],
                    token_ids: &[1, 2],
                    tokens: &tokens,
                    special: &[false, false],
                    labels: &[],
                    hooks: &[&acts, &acts, &acts],
                })
                .unwrap();
            assert_eq!(writer.spare.len(), 3);
        }
        assert_eq!(writer.finish().unwrap().rows, 4);
    }
}
