//! Adam without weight decay, as `torch.optim.Adam` computes it, and global gradient-norm
//! clipping as `torch.nn.utils.clip_grad_norm_` does.
//!
//! Update for step `t` (1-based), per element:
//! `m ← m + (1−β1)(g − m)`, `v ← β2·v + (1−β2)·g²`,
//! `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Adam's constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// First and second moments of each parameter tensor (in `PARAM_NAMES` order; empty where the
/// parameter is) and the step count.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub m: [Vec<f32>; 6],
    pub v: [Vec<f32>; 6],
    /// Updates applied so far.
    pub t: u64,
}

impl AdamState {
    /// Zero moments for parameters of these lengths.
    pub fn zeros(lens: [usize; 6]) -> AdamState {
        AdamState {
            m: lens.map(|n| vec![0.0; n]),
            v: lens.map(|n| vec![0.0; n]),
            t: 0,
        }
    }

    /// Zero moments for the parameters of `sae`.
    pub fn for_sae(sae: &crate::sae::Sae) -> AdamState {
        AdamState::zeros(sae.param_lens())
    }
}

/// The per-step scalars of an Adam update.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    /// `lr / (1 − β1ᵗ)`.
    pub step_size: f32,
    /// `√(1 − β2ᵗ)`.
    pub bias_correction2_sqrt: f32,
    /// Multiplies every gradient first (the clipping coefficient, 1 when not clipped).
    pub grad_scale: f32,
}

impl AdamStep {
    /// The scalars for update number `t` (1-based).
    pub fn new(cfg: &AdamConfig, lr: f32, t: u64, grad_scale: f32) -> AdamStep {
        let t = t as i32;
        let bc1 = 1.0 - cfg.beta1.powi(t);
        let bc2 = 1.0 - cfg.beta2.powi(t);
        AdamStep {
            step_size: lr / bc1,
            bias_correction2_sqrt: bc2.sqrt(),
            grad_scale,
        }
    }
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// One Adam update of `p` with gradient `g` (multiplied by `s.grad_scale` first).
pub fn adam_update(
    cfg: &AdamConfig,
    s: &AdamStep,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let (b1, b2, eps) = (cfg.beta1, cfg.beta2, cfg.eps);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            // Zipped, not indexed: no bounds checks, so the loop vectorises.
            let each = p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
            for (((p, &g), m), v) in each {
                let gi = g * s.grad_scale;
                *m += (1.0 - b1) * (gi - *m);
                *v = b2 * *v + (1.0 - b2) * gi * gi;
                let denom = v.sqrt() / s.bias_correction2_sqrt + eps;
                *p -= s.step_size * *m / denom;
            }
        });
}

/// `√(Σ g²)` over all gradient tensors, summed in f64 over fixed chunks (deterministic
/// whatever the thread count).
pub fn global_norm(grads: &[&[f32]]) -> f64 {
    grads
        .iter()
        .map(|g| {
            g.par_chunks(CHUNK)
                .map(sum_of_squares)
                .collect::<Vec<f64>>()
                .into_iter()
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

/// Σ x² in f64, in eight interleaved sums: one running sum is a chain of dependent adds that
/// no vector unit can speed up, and it made the norm 12% of a training step.
fn sum_of_squares(c: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let lanes = c.chunks_exact(8);
    let rest = lanes.remainder();
    for x in lanes {
        for l in 0..8 {
            acc[l] += (x[l] as f64) * (x[l] as f64);
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &x in rest {
        s += (x as f64) * (x as f64);
    }
    s
}

/// The factor `clip_grad_norm_(max_norm)` multiplies gradients by: `min(1, max/(norm + 1e-6))`.
pub fn clip_coefficient(norm: f64, max_norm: Option<f32>) -> f32 {
    match max_norm {
        Some(max) => ((max as f64) / (norm + 1e-6)).min(1.0) as f32,
        None => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Adam steps on a 3-vector, against values written out by hand from PyTorch's formula.
    #[test]
    fn matches_torch_adam_by_hand() {
        let cfg = AdamConfig::default();
        let mut p = vec![1.0f32, -2.0, 0.5];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        let g = [0.1f32, -0.3, 0.0];
        let s = AdamStep::new(&cfg, 0.01, 1, 1.0);
        adam_update(&cfg, &s, &mut p, &g, &mut m, &mut v);
        // Step 1: m̂ = g, v̂ = g², so p moves by lr·sign(g) (up to ε).
        assert!((p[0] - 0.99).abs() < 1e-6 && (p[1] + 1.99).abs() < 1e-6 && p[2] == 0.5);
        let s = AdamStep::new(&cfg, 0.01, 2, 1.0);
        adam_update(&cfg, &s, &mut p, &g, &mut m, &mut v);
        assert!((p[0] - 0.98).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn clipping_follows_torch() {
        assert_eq!(clip_coefficient(0.5, Some(1.0)), 1.0);
        assert!((clip_coefficient(4.0, Some(1.0)) - 0.25).abs() < 1e-6);
        assert_eq!(clip_coefficient(100.0, None), 1.0);
        let g1 = [3.0f32, 0.0];
        let g2 = [4.0f32];
        assert!((global_norm(&[&g1, &g2]) - 5.0).abs() < 1e-12);
    }
}
