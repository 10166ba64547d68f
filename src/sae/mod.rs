//! Sparse autoencoders: the model ([`model`]), one training step on two engines ([`step`],
//! [`fast`], [`plain`]; a gated SAE's step in `plain_gated` and
//! `fast_gated`), Adam ([`optim`]), the recipes and their schedules ([`config`]), the
//! training loop and evaluation ([`train`]), checkpoints ([`checkpoint`]; the `DIVERGED` marker
//! and safetensors helpers in `files`), the SAELens import/export ([`saelens`]) and the typed
//! `cfg.json` of our export ([`saelens_cfg`]), `unravel eval` ([`evaluate`]) and its report
//! ([`eval_report`]), metrics ([`metrics`]), and CE loss recovered / KL with the SAE spliced into
//! GPT-2 ([`downstream`]); `--target-l0`'s controller of λ ([`target_l0`]).
//! Recipes: docs/design.md; metrics: docs/metrics.md; the run folder: docs/formats.md.

pub mod checkpoint;
pub mod config;
pub mod downstream;
pub mod eval_report;
pub mod evaluate;
pub mod fast;
mod fast_encode;
mod fast_gated;
mod fast_rows;
mod files;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plain;
mod plain_gated;
pub mod saelens;
pub mod saelens_cfg;
pub mod step;
pub mod target_l0;
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
