//! `unravel import`: activation vectors written by other tools, turned into a dataset folder
//! every command accepts (shards, a manifest with statistics and checksums), through the
//! store's own writer.
//!
//! Inputs ([`files`]): `.npy`, `.npz` (stored), `.safetensors` (one named 2-D or 3-D tensor), and
//! parquet / Arrow IPC files with float list columns, among them HF datasets' `save_to_disk`
//! folders and SAELens's cached activations (one `Array2D [context, d]` column per hook and
//! `token_ids`). Several files, or a folder of them, form one dataset; they must agree on the
//! hooks, their widths and the context length. Arrays are read in place in chunks of whole
//! contexts ([`raw`], [`columns`]), so memory stays bounded whatever the input's size.
//!
//! Imported rows have no token text (`token` is empty) and, unless the input carries token ids,
//! token id 0; a 2-D input makes each row its own context (ctx 1).

mod columns;
mod files;
mod raw;
mod run;

use std::path::{Path, PathBuf};

use crate::store::{StorageDtype, StoreError, WriterOptions};

pub use run::import;

/// The number types inputs may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceDtype {
    F16,
    Bf16,
    F32,
    F64,
}

impl SourceDtype {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            SourceDtype::F16 | SourceDtype::Bf16 => 2,
            SourceDtype::F32 => 4,
            SourceDtype::F64 => 8,
        }
    }

    /// The storage dtype that keeps every value: the same width, f64 narrowed to f32.
    pub fn storage(self) -> StorageDtype {
        match self {
            SourceDtype::F16 => StorageDtype::F16,
            SourceDtype::Bf16 => StorageDtype::Bf16,
            SourceDtype::F32 | SourceDtype::F64 => StorageDtype::F32,
        }
    }

    /// Little-endian bytes → f32.
    pub fn decode_le(self, b: &[u8]) -> Vec<f32> {
        match self {
            SourceDtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            SourceDtype::Bf16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            SourceDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            SourceDtype::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        }
    }
}

/// Rows read from an input: whole contexts, every hook `rows × d` values row-major.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Index of the chunk's first row within its file (for messages).
    pub first_row: u64,
    pub rows: usize,
    pub hooks: Vec<Vec<f32>>,
    pub token_ids: Option<Vec<u32>>,
}

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Files or folders, read in order.
    pub inputs: Vec<PathBuf>,
    /// The columns (parquet/Arrow), tensor (safetensors) or array (npz) to import; empty: every
    /// float list column, or the file's only array.
    pub columns: Vec<String>,
    /// Hook name to store a single imported column under (default: the column's name, `acts`
    /// for a `.npy`).
    pub hook: Option<String>,
    /// Storage dtype (default: the input's: f16 and bf16 kept, f32 and f64 stored as f32).
    pub dtype: Option<StorageDtype>,
    /// `model.id` in the manifest (default `imported`).
    pub model: Option<String>,
    /// Shard sizes and compression.
    pub writer: WriterOptions,
}

/// Why an import failed. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not something import can read, or disagrees with the other inputs.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    /// An operating-system error on an input.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing the dataset failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    pub(crate) fn input(path: &Path, message: impl Into<String>) -> ImportError {
        ImportError::Input {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> ImportError {
        ImportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
