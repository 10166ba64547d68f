//! Errors of the activation store. Each names the file at fault and says what to do.

use std::path::PathBuf;

use arrow_schema::DataType;

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong writing or reading an activation dataset.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system error on a file (missing, unwritable, disk full, …).
    #[error("{path}: {source} (check that the folder exists, is writable and has free space)")]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The parquet library failed on a shard (corrupt or truncated file, or a write error).
    #[error("{path}: parquet: {source} (the shard is damaged or unreadable; re-extract it)")]
    Parquet {
        /// The shard at fault.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// Writing a shard failed (disk full, IO error); its `.tmp` file has been removed.
    #[error(
        "{path}: writing failed: {source} (check free space and permissions; the unfinished \
         shard was removed, resume the run to redo it)"
    )]
    Write {
        /// The `.tmp` file being written.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// Building or reading an Arrow array failed.
    #[error("{path}: arrow: {source}")]
    Arrow {
        /// The shard at fault.
        path: PathBuf,
        /// The underlying error.
        source: arrow_schema::ArrowError,
    },
    /// A shard's bytes do not hash to what the manifest recorded.
    #[error(
        "{path}: sha256 mismatch: the manifest says {expected}, the file hashes to {actual} \
         (the shard is corrupt, truncated or was replaced; re-extract it)"
    )]
    Checksum {
        /// The shard at fault.
        path: PathBuf,
        /// The hash recorded in the manifest.
        expected: String,
        /// The hash of the bytes on disk.
        actual: String,
    },
    /// The dataset's manifest says `complete: false`.
    #[error(
        "{dir}: the dataset is incomplete (the manifest says complete: false); {hint}; or pass \
         --allow-incomplete to read the shards it has"
    )]
    Incomplete {
        /// The dataset folder.
        dir: PathBuf,
        /// How to complete it, by the command that wrote it.
        hint: String,
    },
    /// Hook values holding NaN or ±Inf.
    #[error(
        "{path}: hook {hook} holds NaN/Inf values ({rows} rows of row group {row_group}); \
         re-create the dataset, or pass --skip-nonfinite to drop such rows"
    )]
    NonFinite {
        /// The shard at fault.
        path: PathBuf,
        /// The hook column.
        hook: String,
        /// Rows holding NaN/Inf in that row group.
        rows: usize,
        /// The row group.
        row_group: usize,
    },
    /// A shard's content does not match the manifest (columns, types, sizes).
    #[error("{path}: {message}")]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// A shard's column does not have the type or width the manifest promises.
    #[error("{path}: {source}")]
    Column {
        /// The shard at fault.
        path: PathBuf,
        /// Which column and how it differs.
        source: ColumnError,
    },
    /// The manifest is missing, unreadable or malformed.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest file at fault.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A batch handed to a writer is malformed (a caller bug, not a user error).
    #[error("invalid batch for {path}: {message}")]
    Batch {
        /// The shard being written.
        path: PathBuf,
        /// What is wrong with the batch.
        message: String,
    },
    /// A resumed run asks for different settings than the dataset already on disk.
    #[error("cannot resume the dataset in {dir}: {differences} (use a new output folder, or the original settings)")]
    Incompatible {
        /// The dataset folder.
        dir: PathBuf,
        /// The differing settings, `; `-separated.
        differences: String,
    },
    /// A part number outside 1..=count.
    #[error("part {index} of {count}: the index must be in 1..={count}")]
    Part {
        /// The part asked for (1-based).
        index: u32,
        /// How many parts there are.
        count: u32,
    },
    /// Manifests of parts cannot be merged.
    #[error("cannot merge manifests: {0}")]
    Merge(String),
    /// A hook that the dataset does not hold.
    #[error("the dataset in {dir} has no hook {name}; it has: {available}")]
    UnknownHook {
        /// The dataset folder.
        dir: PathBuf,
        /// The requested hook.
        name: String,
        /// The hooks it does hold, comma-separated.
        available: String,
    },
    /// Invalid loader settings or state.
    #[error("loader: {0}")]
    Loader(String),
    /// Creating a tensor on the target device failed.
    #[error("loader: cannot build a tensor on the device: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// A column of a shard that does not match the manifest (the shard's path is added by
/// [`StoreError::Column`]). `found` is the column's Arrow type; `item` and `d` are the item type
/// and width the manifest says a hook column has.
#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    /// A column the manifest names is not in the shard.
    #[error("has no column {column}; it is not a shard of this dataset")]
    Missing { column: String },
    /// A hook column whose schema type differs from the manifest's.
    #[error("column {column} is {found}, the manifest says fixed_size_list<{item}>[{d}]")]
    Schema {
        column: String,
        found: DataType,
        item: DataType,
        d: usize,
    },
    /// A hook column whose data is not a fixed-size list.
    #[error("column {column} is {found}, expected fixed_size_list<{item}>[{d}]")]
    NotAList {
        column: String,
        found: DataType,
        item: DataType,
        d: usize,
    },
    /// A hook column whose list width or item type differs from the manifest's.
    #[error("column {column} is {found}, but the manifest says fixed_size_list<{item}>[{d}]")]
    Shape {
        column: String,
        found: DataType,
        item: DataType,
        d: usize,
    },
    /// A hook column whose values buffer has the wrong length or holds nulls.
    #[error("column {column} has a malformed values buffer")]
    Values { column: String },
    /// A hook column whose values are not of its item type.
    #[error("column {column}: unexpected item type")]
    ItemType { column: String },
}

impl StoreError {
    /// Wraps an IO error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a parquet error with the shard it happened on.
    pub(crate) fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        StoreError::Parquet {
            path: path.into(),
            source,
        }
    }

    /// A column of the shard at `path` that does not match the manifest.
    pub(crate) fn column(path: impl Into<PathBuf>, source: ColumnError) -> Self {
        StoreError::Column {
            path: path.into(),
            source,
        }
    }

    /// A format mismatch in `path`.
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        StoreError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
