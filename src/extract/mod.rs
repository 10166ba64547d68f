//! `unravel extract`: corpus → packed contexts → hooked forward → parquet shards + manifest.
//!
//! Three stages run at once, joined by bounded channels so memory stays bounded by the batch and
//! shard size, not the corpus:
//!
//! ```text
//! packer thread (read, tokenize, pack, --part filter)
//!     ─▶ forward workers (one per CPU thread, each on its own contexts; one on a GPU)
//!     ─▶ main thread (puts the batches back in order, progress)
//!     ─▶ writer thread (f16/bf16 conversion, parquet + zstd, sha256, atomic rename, manifest)
//! ```
//!
//! Context ids are global (the same corpus and settings give the same ids on every machine);
//! `--part i/N` keeps the contexts with `id % N == i - 1`. A resumed run starts at the manifest's
//! `next_context_id`, so it ends with exactly the rows of an uninterrupted run.
//!
//! - `plan.rs`: [`ExtractPlan`], its checks and the manifest header.
//! - `run.rs`: [`run`], wiring the stages together and reporting.
//! - `threads.rs`: the packer thread, the forward workers and the reordering of their results.
//! - `columns.rs`: the writer thread, rows and columns for the shards.

use std::path::PathBuf;

use crate::corpus::CorpusError;
use crate::store::StoreError;

mod columns;
mod plan;
mod run;
mod threads;

pub use plan::{default_bos, ExtractPlan};
pub use run::{run, ExtractReport, StageTimings};
pub use threads::Progress;

/// What stops an extraction.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model forward failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{flag}: {reason}")]
    BadOption { flag: &'static str, reason: String },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("corpus `{0}` produced no tokens (every document is empty, or shorter than one context); give it more text or a smaller --ctx")]
    NoTokens(String),
    #[error("{0} thread stopped unexpectedly")]
    Thread(&'static str),
}
