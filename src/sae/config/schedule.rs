//! What the trainer derives from a [`TrainConfig`]: the number of steps, the LR and λ
//! schedules ([`TrainConfig::lr_at`], [`TrainConfig::l1_at`]), the default learning rate, the
//! memory estimate, and the settings the step and the loader take.

use super::{Recipe, TrainConfig};
use crate::sae::optim::AdamConfig;
use crate::sae::step::StepConfig;

impl TrainConfig {
    /// Peak bytes of host memory the trainer needs, estimated before anything is allocated:
    /// weights, gradients and the two Adam moments (4 copies of the parameters), a checkpoint's
    /// snapshot of weights and moments (3 more), per batch the pre-activations, features and
    /// their gradients (3 × batch × d_sae) and the inputs (2 × batch × d_in), and the loader's
    /// shuffle window and the one decoded ahead (2 × shuffle_buffer × d_in), all f32, and W_enc
    /// once more in bf16.
    pub fn memory_bytes(&self) -> u64 {
        use crate::memory::product;
        let (d_in, d_sae, batch) = (self.d_in as u64, self.d_sae as u64, self.batch as u64);
        let params = product(&[2, d_sae, d_in])
            .saturating_add(d_sae)
            .saturating_add(d_in);
        let floats = product(&[7, params])
            .saturating_add(product(&[3, batch, d_sae]))
            .saturating_add(product(&[2, batch, d_in]))
            .saturating_add(product(&[2, self.shuffle_buffer as u64, d_in]))
            // W_enc packed as bf16 tiles for the AMX screen (`kernels/screened.rs`): ½ float each.
            .saturating_add(product(&[d_sae, d_in]) / 2);
        product(&[4, floats])
    }

    /// Optimisation steps in the run.
    pub fn total_steps(&self) -> u64 {
        self.tokens.div_ceil(self.batch as u64)
    }

    fn frac_steps(&self, frac: f64) -> u64 {
        (frac * self.total_steps() as f64).round() as u64
    }

    /// Learning rate of step `t` (0-based): linear warm-up, constant, linear decay to 0.
    pub fn lr_at(&self, t: u64) -> f32 {
        let total = self.total_steps();
        let (warm, decay) = (
            self.frac_steps(self.lr_warmup_frac),
            self.frac_steps(self.lr_decay_frac),
        );
        let mut f = 1.0f64;
        if warm > 0 {
            f = f.min((t + 1) as f64 / warm as f64);
        }
        if decay > 0 {
            f = f.min(total.saturating_sub(t) as f64 / decay as f64);
        }
        (self.lr as f64 * f) as f32
    }

    /// λ of step `t` (0-based): `λ·min(1, (t+1)/warm-up steps)`.
    pub fn l1_at(&self, t: u64) -> f32 {
        let warm = self.frac_steps(self.l1_warmup_frac);
        let f = if warm > 0 {
            ((t + 1) as f64 / warm as f64).min(1.0)
        } else {
            1.0
        };
        (self.l1_coefficient as f64 * f) as f32
    }

    /// How the trainer reads its dataset.
    pub fn read_options(&self) -> crate::store::ReadOptions {
        crate::store::ReadOptions {
            allow_incomplete: self.allow_incomplete,
            skip_nonfinite: self.skip_nonfinite,
        }
    }

    /// What the step needs of the recipe.
    pub fn step_config(&self) -> StepConfig {
        StepConfig {
            decoder_norm_l1: self.recipe == Recipe::April2024,
            unit_norm_decoder: self.recipe == Recipe::UnitNorm,
            clip_norm: self.clip_norm,
            adam: AdamConfig {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.adam_eps,
            },
        }
    }
}

/// The default learning rate of a run of `steps` steps: `1e-3 · √(250 / steps)`, clamped between
/// the recipe's long-run rate (april-2024: 5e-5, as SAELens; unit-norm: 1e-4) and 1e-3. So 1e-3
/// up to 250 steps (1M tokens at batch 4096), ≈3.2e-4 at 10M tokens, ≈1.4e-4 at 50M, ≈1e-4 at
/// 100M, and the long-run rate from ≈400M tokens (april-2024) on.
pub fn default_lr(recipe: Recipe, steps: u64) -> f32 {
    let floor = match recipe {
        Recipe::April2024 | Recipe::Gated => 5e-5,
        Recipe::UnitNorm => 1e-4,
    };
    let lr = 1e-3 * (250.0 / steps.max(1) as f64).sqrt();
    lr.clamp(floor, 1e-3) as f32
}
