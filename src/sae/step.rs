//! One training step of an SAE — forward, hand-written backward, clipping, Adam — behind one
//! interface with two implementations:
//!
//! - [`crate::sae::fast::FastEngine`]: CPU f32, sparse. After the ReLU only L0 ≪ d_sae features
//!   are non-zero, so the decoder forward, the decoder gradient, `∂L/∂f` and the encoder weight
//!   gradient are computed over the active (token, feature) pairs only; the encoder forward is
//!   one dense GEMM. Falls back to dense GEMMs while the code is dense (early training).
//! - [`crate::sae::plain::PlainEngine`]: candle tensor ops only, dense: runs on every device
//!   (CPU, CUDA, Metal) and dtype; the reference the fast engine is tested against.
//!
//! The loss, for a batch of B inputs (rows of `x`, already scaled):
//! `L = (1/B) Σ_t ‖x̂_t − x_t‖² + λ (1/B) Σ_t Σ_i f_ti·w_i`, with `w_i = ‖W_dec,i‖` (decoder-norm
//! weighted L1, `april-2024`) or `w_i = 1` (`unit-norm`). Gradients, with `G = (2/B)(x̂ − x)`:
//! `∂L/∂pre_ti = [pre_ti > 0]·(G_t·W_dec,i + λ w_i / B)`, `∂L/∂W_dec,i = Σ_t f_ti G_t
//! (+ (λ/B)(Σ_t f_ti) W_dec,i / w_i)`, `∂L/∂W_enc,i = Σ_t ∂pre_ti · xin_t`,
//! `∂L/∂b_enc,i = Σ_t ∂pre_ti`, `∂L/∂b_dec = Σ_t G_t − [apply_b_dec] Σ_i ∂b_enc,i W_enc,i`.
//! Then (unit-norm) the component of each decoder gradient row parallel to its row is removed,
//! the global gradient norm is clipped, Adam updates, and (unit-norm) decoder rows are
//! renormalised.

use super::model::Sae;
use super::optim::{AdamConfig, AdamState};

/// The parts of a recipe the step itself needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepConfig {
    /// Weight each feature's L1 term by its decoder norm (`april-2024`).
    pub decoder_norm_l1: bool,
    /// Keep decoder rows at unit norm: remove the parallel gradient, renormalise (`unit-norm`).
    pub unit_norm_decoder: bool,
    /// Clip the global gradient norm to this (`april-2024`: 1.0).
    pub clip_norm: Option<f32>,
    pub adam: AdamConfig,
}

/// What one step (or one forward pass) measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Rows in the batch.
    pub rows: usize,
    /// `Σ_t ‖x̂_t − x_t‖²` (training space).
    pub sq_err: f64,
    /// `Σ_t Σ_i f_ti w_i` (the L1 term before λ and 1/B).
    pub l1_sum: f64,
    /// `Σ_t #{i: f_ti > 0}`.
    pub active: u64,
    /// Tokens each feature fired on in this batch, `[d_sae]`.
    pub fired: Vec<u32>,
    /// Global gradient norm before clipping (0 for forward-only passes).
    pub grad_norm: f64,
}

impl StepStats {
    /// Mean squared error per token, summed over dimensions.
    pub fn mse(&self) -> f64 {
        self.sq_err / self.rows.max(1) as f64
    }
    /// Mean L1 term per token.
    pub fn l1(&self) -> f64 {
        self.l1_sum / self.rows.max(1) as f64
    }
    /// Mean number of active features per token.
    pub fn l0(&self) -> f64 {
        self.active as f64 / self.rows.max(1) as f64
    }
}

/// A forward pass for evaluation: reconstructions plus the statistics.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// `[rows, d_in]`, training space.
    pub x_hat: Vec<f32>,
    pub stats: StepStats,
}

/// A training engine: owns the parameters and Adam state on its device.
pub trait Engine: Send {
    /// One optimisation step on `x [rows, d_in]` (training space) with this learning rate and
    /// L1 coefficient.
    fn step(
        &mut self,
        x: &[f32],
        rows: usize,
        lr: f32,
        l1_coefficient: f32,
    ) -> crate::sae::Result<StepStats>;

    /// Encode + decode without updating anything.
    fn reconstruct(&mut self, x: &[f32], rows: usize) -> crate::sae::Result<Reconstruction>;

    /// The parameters and optimiser state, on the host.
    fn snapshot(&self) -> crate::sae::Result<(Sae, AdamState)>;

    /// Replaces the parameters and optimiser state.
    fn restore(&mut self, sae: &Sae, adam: &AdamState) -> crate::sae::Result<()>;

    /// A short name for logs (`fast-cpu`, `plain-cuda`, …).
    fn name(&self) -> String;
}
