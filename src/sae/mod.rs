//! Sparse autoencoders: the model ([`model`]), one training step on two engines ([`step`],
//! [`fast`], [`plain`]), Adam ([`optim`]), the recipes and their schedules ([`config`]), the
//! training loop ([`train`]), checkpoints and the SAELens export ([`checkpoint`]), and metrics
//! ([`metrics`]).

pub mod checkpoint;
pub mod config;
pub mod downstream;
pub mod evaluate;
pub mod fast;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plain;
pub mod step;
pub mod train;

#[cfg(test)]
mod engine_tests;

pub use config::{PartialConfig, Recipe, TrainConfig};
pub use model::Sae;
pub use step::{Engine, StepConfig, StepStats};

#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: {reason}")]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Data(String),
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error("interrupted: a checkpoint was saved; continue with --resume")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, SaeError>;
