//! The choices that pick an algorithm rather than tune one: the training [`Recipe`] and the
//! step implementation ([`EngineChoice`]).

use serde::{Deserialize, Serialize};

use crate::sae::{Result, SaeError};

/// The three training recipes (defined in docs/design.md, "SAE recipes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipe {
    /// Anthropic, April 2024 update: inputs scaled to E‖x‖ = √d_in, decoder-norm-weighted L1,
    /// decoder rows of norm 0.1 at init with W_enc = W_decᵀ, λ warm-up over the first 5% of
    /// steps, LR linear decay over the last 20%, gradient-norm clip 1.0.
    #[serde(rename = "april-2024")]
    April2024,
    /// Towards Monosemanticity (2023): b_dec subtracted before the encoder and initialised to the
    /// geometric median, unit-norm decoder rows (parallel gradient removed, renormalised after
    /// each step), plain L1, dead-feature resampling.
    #[serde(rename = "unit-norm")]
    UnitNorm,
    /// Gated SAE with an L1-penalised gate (Rajamanoharan et al. 2024), as SAELens 6's
    /// `GatedTrainingSAE`: the april-2024 init, schedules and clip, b_dec subtracted from the
    /// input, loss = MSE + λ·Σ ReLU(π_gate)·‖W_dec,i‖ + the gate path's reconstruction error.
    #[serde(rename = "gated")]
    Gated,
}

impl Recipe {
    pub fn parse(s: &str) -> Result<Recipe> {
        match s {
            "april-2024" => Ok(Recipe::April2024),
            "unit-norm" => Ok(Recipe::UnitNorm),
            "gated" => Ok(Recipe::Gated),
            other => Err(SaeError::Config(format!(
                "unknown recipe `{other}`: use april-2024, unit-norm or gated"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Recipe::April2024 => "april-2024",
            Recipe::UnitNorm => "unit-norm",
            Recipe::Gated => "gated",
        }
    }
}

/// Which step implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The fast sparse engine on CPU f32, the plain engine elsewhere.
    Auto,
    /// The sparse CPU engine (CPU only).
    Fast,
    /// Plain candle ops (any device).
    Plain,
}
