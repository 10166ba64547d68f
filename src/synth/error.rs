//! Errors of the synthetic datasets' specs and truth files (writing the shards themselves fails
//! with the store's `StoreError`).

use std::path::PathBuf;

/// A spec out of range, a truth file that cannot be read or written, or an audit that does not
/// fit the truth.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A spec value out of range; the message names the `unravel synth` flag and the value.
    #[error("{0}")]
    Spec(String),
    /// A truth file that cannot be read, parsed or written.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// The audit scored against a neuron truth has another number of units.
    #[error(
        "the audit has {units} units, the truth {neurons} neurons: audit the `{hook}` hook \
         of the planted dataset"
    )]
    UnitCount {
        units: usize,
        neurons: usize,
        hook: &'static str,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl SynthError {
    /// `path` at fault, saying why.
    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        SynthError::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// `Err(SynthError::Spec(message))`, for the spec checks.
pub(crate) fn spec<T>(message: impl Into<String>) -> Result<T, SynthError> {
    Err(SynthError::Spec(message.into()))
}
