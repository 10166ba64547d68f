//! Errors of the toy experiments: a setting out of range (named by its key), a settings file
//! that cannot be read, a training run that diverged, or a failure inside candle.

use std::path::PathBuf;

/// Everything that can go wrong setting up or training a toy experiment.
#[derive(Debug, thiserror::Error)]
pub enum ToyError {
    /// A setting out of range; `key` is its name in the settings file.
    #[error("{key}: {problem}")]
    Setting { key: String, problem: String },
    /// An experiment name that does not exist.
    #[error("unknown experiment `{name}`: expected one of {expected}")]
    UnknownExperiment { name: String, expected: String },
    /// The settings file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The settings file is not valid TOML or has unknown keys.
    #[error("{}: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: toml::de::Error,
    },
    /// The loss became NaN/Inf.
    #[error("toy training diverged at step {step} (loss {loss}); lower --lr")]
    Diverged { step: usize, loss: f64 },
    /// The initial weights' distribution cannot be built.
    #[error(transparent)]
    Init(#[from] rand_distr::NormalError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ToyError {
    /// A setting `key` out of range, saying why.
    pub(crate) fn setting(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ToyError::Setting {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
