//! The activation store: parquet shards of hooked-model activations, their manifest, and
//! the shuffled streaming loader that feeds the SAE trainer.
//!
//! Writing: [`DatasetWriter`] takes batches of whole contexts ([`ContextBatch`]) and rolls them into
//! shards ([`ShardWriter`]), saving the [`Manifest`] atomically after every finished shard so an
//! interrupted run resumes where the manifest says (`next_context_id`).
//!
//! Reading: [`Dataset`] opens a folder and reads one hook column at a time; every read passes
//! the checks of `integrity.rs` (the manifest's `complete` flag, each shard's sha256 the first
//! time a process opens it, finite hook values: see [`ReadOptions`]); [`Dataset::verify`]
//! re-hashes every shard and checks its footer on request. [`Loader`] streams shuffled
//! `[batch, d]` f32 tensors with an exactly resumable position ([`LoaderState`]).
//!
//! [`inspect`]: `unravel inspect`'s summary of a dataset and a preview of its rows.
//!
//! Field-by-field reference of the folder and the manifest: docs/formats.md.
//!
//! # On-disk format (format_version 1)
//!
//! A dataset folder holds `shard-00000.parquet`, `shard-00001.parquet`, … and a metadata folder
//! `__unravel__/` with `manifest.json` (`shard-p03-00000.parquet` and `__unravel__/manifest-p03.json`
//! when the run is part 3 of several, so several machines can write into one folder; `unravel
//! merge-manifests` joins them); see `layout.rs`. Each shard holds whole contexts; its columns,
//! in order:
//!
//! | column | arrow type | notes |
//! |---|---|---|
//! | `context_id` | UInt64 | global: the same corpus and settings give the same ids; part i of N holds `id % N == i - 1` |
//! | `position` | UInt32 | 0, 1, … within the context |
//! | `token_id` | UInt32 | |
//! | `token` | Utf8 | the token's string |
//! | `special` | Boolean | BOS/CLS/SEP rows: stored, excluded from training by default |
//! | label columns | Utf8, nullable | names chosen by the extractor, e.g. `label.sentiment` |
//! | one per hook | FixedSizeList\<item\>\[d\] | named exactly by the hook, e.g. `blocks.3.hook_resid_post` |
//!
//! Hook items are Float16 or Float32 (readable as such by pyarrow, pandas and duckdb). Arrow and
//! Parquet have no bfloat16, so bf16 hooks are stored as **UInt16 holding the bfloat16 bit
//! pattern**; every hook column's Arrow field carries the metadata
//! `{"unravel.dtype": "float16" | "bfloat16" | "float32"}` to tell them apart (numpy:
//! `(u16.astype(np.uint32) << 16).view(np.float32)`).
//!
//! Encodings: zstd (level 1 by default; `--zstd-level`, 0 for none) everywhere; dictionary
//! encoding only for `token` and label columns; no statistics on hook values. f32 and bf16 hook
//! values use BYTE_STREAM_SPLIT (it groups the exponent bytes so zstd can compress them); f16
//! values stay PLAIN because DuckDB cannot read BYTE_STREAM_SPLIT on FIXED_LEN_BYTE_ARRAY
//! columns. Row groups hold 8192 rows by default; the
//! loader shuffles at row-group granularity.

mod encode;
mod error;
mod f16_chunk;
pub mod inspect;
mod integrity;
mod layout;
mod loader;
mod manifest;
mod reader;
mod schema;
mod shard;
mod shard_file;
mod shuffle;
mod stats;
mod token_rows;
mod window;
mod writer;

pub use error::{ColumnError, Result, StoreError};
pub use integrity::{completion_hint, ReadOptions};
pub(crate) use integrity::{nonfinite_rows, remove_rows, retain_rows};
pub use layout::{meta_dir, meta_or_legacy, META_DIR};
pub use loader::{Loader, LoaderConfig, LoaderMode, LoaderState, DEFAULT_SHUFFLE_BUFFER};
pub use manifest::{
    manifest_path, merge, merge_part_folders, Bos, CorpusInfo, Manifest, ModelInfo, Part,
    ShardInfo, Totals, FORMAT, FORMAT_VERSION, MANIFEST_FILE,
};
pub use reader::{Dataset, HookRows, ShardReader};
pub use schema::{HookInfo, StorageDtype, DTYPE_METADATA_KEY};
pub use shard::{
    ContextBatch, ShardWriter, ShardWriterBuilder, DEFAULT_ROW_GROUP_ROWS, DEFAULT_ZSTD_LEVEL,
};
pub(crate) use shuffle::mix as mix_seed;
pub use stats::{HookStats, RunningStats};
pub use token_rows::TokenRows;
pub use writer::{DatasetWriter, WriterOptions, DEFAULT_SHARD_ROWS};

/// CPU seconds the calling thread has used (0 where the platform has no per-thread clock).
pub fn thread_cpu_secs() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes into the timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

/// CPU seconds spent so far, in this process, encoding parquet column chunks on rayon's pool
/// (the work writers hand off their own thread). For reports of where extraction time goes.
pub fn encode_cpu_secs() -> f64 {
    encode::cpu_secs()
}
