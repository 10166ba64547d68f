//! The sparse autoencoder's parameters, their initialisation, and encode/decode on the host.
//!
//! `f = ReLU((x − [b_dec]) · W_enc + b_enc)`, `x̂ = f · W_dec + b_dec`, where `b_dec` is subtracted
//! from the input only when `apply_b_dec_to_input` (the `unit-norm` and `gated` recipes).
//!
//! A gated SAE (Rajamanoharan et al. 2024, as SAELens's `gated` architecture) has two more
//! per-feature parameters, `r_mag` and `b_mag`, and `b_enc` serves as its gate bias `b_gate`:
//! with `π = (x − b_dec) · W_enc`, `f = [π + b_gate > 0] · ReLU(exp(r_mag) ⊙ π + b_mag)`.
//! `r_mag` and `b_mag` are empty for the other recipes (so their checkpoints keep four tensors).
//!
//! Layout: both weight matrices are stored **feature-major**, `[d_sae, d_in]` row-major: row `i`
//! of `w_enc` is column `i` of SAELens's `W_enc [d_in, d_sae]`, row `i` of `w_dec` is feature
//! `i`'s decoder direction. Every per-feature gradient is then one contiguous row, which is what
//! the sparse kernels want. The transposition happens only at export.

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::kernels::{axpy, dot};

/// The parameters, in training space (inputs multiplied by the run's scaling factor).
#[derive(Debug, Clone, PartialEq)]
pub struct Sae {
    pub d_in: usize,
    pub d_sae: usize,
    /// `[d_sae, d_in]`: row `i` = column `i` of SAELens's `W_enc`.
    pub w_enc: Vec<f32>,
    /// `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// `[d_sae, d_in]`: row `i` = feature `i`'s decoder direction.
    pub w_dec: Vec<f32>,
    /// `[d_in]`.
    pub b_dec: Vec<f32>,
    /// Subtract `b_dec` from the input before the encoder.
    pub apply_b_dec_to_input: bool,
    /// `[d_sae]` (gated SAEs; empty otherwise): the magnitude path's log-scale of `W_enc`.
    pub r_mag: Vec<f32>,
    /// `[d_sae]` (gated SAEs; empty otherwise): the magnitude path's bias.
    pub b_mag: Vec<f32>,
}

/// The parameter tensors in a fixed order (weights, Adam moments and gradients all use it); the
/// last two are empty unless the SAE is gated.
pub const PARAM_NAMES: [&str; 6] = ["w_enc", "b_enc", "w_dec", "b_dec", "r_mag", "b_mag"];

impl Sae {
    /// All parameters zero.
    pub fn zeros(d_in: usize, d_sae: usize, apply_b_dec_to_input: bool) -> Sae {
        Sae {
            d_in,
            d_sae,
            w_enc: vec![0.0; d_sae * d_in],
            b_enc: vec![0.0; d_sae],
            w_dec: vec![0.0; d_sae * d_in],
            b_dec: vec![0.0; d_in],
            apply_b_dec_to_input,
            r_mag: vec![],
            b_mag: vec![],
        }
    }

    /// All parameters zero, with the gated SAE's `r_mag` and `b_mag`.
    pub fn zeros_gated(d_in: usize, d_sae: usize, apply_b_dec_to_input: bool) -> Sae {
        let mut sae = Sae::zeros(d_in, d_sae, apply_b_dec_to_input);
        sae.r_mag = vec![0.0; d_sae];
        sae.b_mag = vec![0.0; d_sae];
        sae
    }

    /// Whether this is a gated SAE (it has `r_mag` and `b_mag`).
    pub fn is_gated(&self) -> bool {
        !self.r_mag.is_empty()
    }

    /// The lengths of the parameters in [`PARAM_NAMES`] order.
    pub fn param_lens(&self) -> [usize; 6] {
        self.params().map(|p| p.len())
    }

    /// Anthropic's April 2024 init: decoder rows are random directions of norm `dec_norm`
    /// (0.1), `W_enc = W_decᵀ`, biases zero.
    pub fn init_april(d_in: usize, d_sae: usize, dec_norm: f32, seed: u64) -> Sae {
        let mut sae = Sae::zeros(d_in, d_sae, false);
        sae.w_dec = random_rows(d_sae, d_in, dec_norm, seed);
        sae.w_enc = sae.w_dec.clone();
        sae
    }

    /// Towards Monosemanticity's init: unit-norm decoder rows, `W_enc = W_decᵀ`, `b_enc = 0`,
    /// `b_dec` = the given geometric median of a sample (the caller computes it).
    pub fn init_unit_norm(d_in: usize, d_sae: usize, b_dec: Vec<f32>, seed: u64) -> Sae {
        let mut sae = Sae::zeros(d_in, d_sae, true);
        sae.w_dec = random_rows(d_sae, d_in, 1.0, seed);
        sae.w_enc = sae.w_dec.clone();
        sae.b_dec = b_dec;
        sae
    }

    /// SAELens's gated init (`GatedTrainingSAE`): the April 2024 decoder rows of norm
    /// `dec_norm` with `W_enc = W_decᵀ`, `b_dec` subtracted from the input, every bias and
    /// `r_mag` zero.
    pub fn init_gated(d_in: usize, d_sae: usize, dec_norm: f32, seed: u64) -> Sae {
        let mut sae = Sae::zeros_gated(d_in, d_sae, true);
        sae.w_dec = random_rows(d_sae, d_in, dec_norm, seed);
        sae.w_enc = sae.w_dec.clone();
        sae
    }

    /// The parameter slices in [`PARAM_NAMES`] order.
    pub fn params(&self) -> [&[f32]; 6] {
        [
            &self.w_enc,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
            &self.r_mag,
            &self.b_mag,
        ]
    }

    /// Mutable parameter slices in [`PARAM_NAMES`] order.
    pub fn params_mut(&mut self) -> [&mut Vec<f32>; 6] {
        [
            &mut self.w_enc,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
            &mut self.r_mag,
            &mut self.b_mag,
        ]
    }

    /// Feature `i`'s activation given its encoder product `p = xin · W_enc,i` (bias not added):
    /// `ReLU(p + b_enc,i)`, or for a gated SAE `[p + b_gate,i > 0] · ReLU(exp(r_mag,i)·p + b_mag,i)`.
    /// Every encode goes through here.
    #[inline]
    pub fn activate(&self, i: usize, p: f32) -> f32 {
        if self.is_gated() {
            if p + self.b_enc[i] > 0.0 {
                (self.r_mag[i].exp() * p + self.b_mag[i]).max(0.0)
            } else {
                0.0
            }
        } else {
            (p + self.b_enc[i]).max(0.0)
        }
    }

    /// Feature `i`'s activation on one input row `x [d_in]` (the audit's per-unit reads).
    pub fn feature_activation(&self, i: usize, x: &[f32]) -> f32 {
        let d = self.d_in;
        let w = &self.w_enc[i * d..(i + 1) * d];
        // The standard sum starts from b_enc, as it always did (same bits).
        let mut pre = if self.is_gated() { 0.0 } else { self.b_enc[i] };
        for j in 0..d {
            let xin = if self.apply_b_dec_to_input {
                x[j] - self.b_dec[j]
            } else {
                x[j]
            };
            pre += w[j] * xin;
        }
        if self.is_gated() {
            self.activate(i, pre)
        } else {
            pre.max(0.0)
        }
    }

    /// The SAE restricted to the encoders of `units` (in that order; the decoder left zero):
    /// what the audit encodes when it scores a subset of features.
    pub fn encoder_subset(&self, units: &[usize]) -> Sae {
        let d = self.d_in;
        let mut sub = if self.is_gated() {
            Sae::zeros_gated(d, units.len(), self.apply_b_dec_to_input)
        } else {
            Sae::zeros(d, units.len(), self.apply_b_dec_to_input)
        };
        for (i, &u) in units.iter().enumerate() {
            sub.w_enc[i * d..(i + 1) * d].copy_from_slice(&self.w_enc[u * d..(u + 1) * d]);
            sub.b_enc[i] = self.b_enc[u];
            if self.is_gated() {
                sub.r_mag[i] = self.r_mag[u];
                sub.b_mag[i] = self.b_mag[u];
            }
        }
        sub.b_dec.copy_from_slice(&self.b_dec);
        sub
    }

    /// `‖W_dec,i‖` for every feature.
    pub fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec
            .par_chunks(self.d_in)
            .map(|row| crate::kernels::dot(row, row).sqrt())
            .collect()
    }

    /// Rescales every decoder row to unit norm (rows of norm 0 are left alone).
    pub fn normalize_decoder(&mut self) {
        self.w_dec.par_chunks_mut(self.d_in).for_each(|row| {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|v| *v /= n);
            }
        });
    }

    /// Feature activations of `rows` inputs `x [rows, d_in]` → `[rows, d_sae]` (dense; for
    /// evaluation and export checks, not for training).
    pub fn encode(&self, x: &[f32]) -> Vec<f32> {
        let d = self.d_in;
        let mut out = vec![0f32; (x.len() / d) * self.d_sae];
        out.par_chunks_mut(self.d_sae)
            .zip(x.par_chunks(d))
            .for_each(|(f, xr)| {
                let xin: Vec<f32> = if self.apply_b_dec_to_input {
                    xr.iter().zip(&self.b_dec).map(|(a, b)| a - b).collect()
                } else {
                    xr.to_vec()
                };
                for (i, fi) in f.iter_mut().enumerate() {
                    *fi = self.activate(i, dot(&xin, &self.w_enc[i * d..(i + 1) * d]));
                }
            });
        out
    }

    /// Feature activations of `x [rows, d_in]` laid out feature-major, `[d_sae, rows]` (one
    /// contiguous row per feature: what per-feature statistics scan). One GEMM.
    pub fn encode_feature_major(&self, x: &[f32]) -> Vec<f32> {
        let d = self.d_in;
        let rows = x.len() / d.max(1);
        let xin: std::borrow::Cow<[f32]> = if self.apply_b_dec_to_input {
            let mut v = x.to_vec();
            v.chunks_mut(d)
                .for_each(|r| r.iter_mut().zip(&self.b_dec).for_each(|(a, b)| *a -= b));
            v.into()
        } else {
            x.into()
        };
        let mut out = vec![0f32; self.d_sae * rows];
        // out[i, t] = Σ_j w_enc[i, j] · xin[t, j]
        crate::kernels::matmul(
            (self.d_sae, rows, d),
            &mut out,
            false,
            &self.w_enc,
            (d, 1),
            &xin,
            (1, d),
        );
        out.par_chunks_mut(rows.max(1))
            .enumerate()
            .for_each(|(i, f)| f.iter_mut().for_each(|v| *v = self.activate(i, *v)));
        out
    }

    /// Reconstructions `[rows, d_in]` of dense feature activations `f [rows, d_sae]`.
    pub fn decode(&self, f: &[f32]) -> Vec<f32> {
        let d = self.d_in;
        let mut out = vec![0f32; (f.len() / self.d_sae) * d];
        out.par_chunks_mut(d)
            .zip(f.par_chunks(self.d_sae))
            .for_each(|(xh, fr)| {
                xh.copy_from_slice(&self.b_dec);
                for (i, &fi) in fr.iter().enumerate() {
                    if fi != 0.0 {
                        axpy(fi, &self.w_dec[i * d..(i + 1) * d], xh);
                    }
                }
            });
        out
    }

    /// The same SAE acting on unscaled inputs: with inputs scaled by `s` during training,
    /// `f(x) = ReLU((s·x − b_dec)·W_enc + b_enc)` and `x̂ = (f·W_dec + b_dec)/s`, so
    /// `W_enc' = s·W_enc`, `W_dec' = W_dec/s`, `b_dec' = b_dec/s` (b_enc unchanged; a gated
    /// SAE's `π` is unchanged too, so `r_mag` and `b_mag` are).
    pub fn fold_scaling(&self, s: f32) -> Sae {
        let mut out = self.clone();
        out.w_enc.iter_mut().for_each(|v| *v *= s);
        out.w_dec.iter_mut().for_each(|v| *v /= s);
        out.b_dec.iter_mut().for_each(|v| *v /= s);
        out
    }

    /// The inverse of [`Sae::fold_scaling`]: an SAE for raw inputs, expressed for inputs
    /// scaled by `s` (used when training starts from an exported SAE).
    pub fn unfold_scaling(&self, s: f32) -> Sae {
        let mut out = self.clone();
        out.w_enc.iter_mut().for_each(|v| *v /= s);
        out.w_dec.iter_mut().for_each(|v| *v *= s);
        out.b_dec.iter_mut().for_each(|v| *v *= s);
        out
    }
}

/// `rows` Gaussian directions of `d` dims, each scaled to norm `norm`; deterministic for a seed.
fn random_rows(rows: usize, d: usize, norm: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut w: Vec<f32> = (0..rows * d).map(|_| rng.sample(StandardNormal)).collect();
    for row in w.chunks_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v *= norm / n);
    }
    w
}

/// The geometric median of `rows` points `x [rows, d]` (Weiszfeld's algorithm, in f64), the
/// `unit-norm` recipe's initial `b_dec`: robust to the few huge-norm outliers of real activations.
pub fn geometric_median(x: &[f32], d: usize, max_iter: usize, tol: f64) -> Vec<f32> {
    let n = x.len() / d;
    if n == 0 {
        return vec![0.0; d];
    }
    // Start from the mean.
    let mut y = vec![0f64; d];
    for row in x.chunks(d) {
        for (yi, &v) in y.iter_mut().zip(row) {
            *yi += v as f64 / n as f64;
        }
    }
    for _ in 0..max_iter {
        // Σ_j x_j / ‖x_j − y‖ and Σ_j 1 / ‖x_j − y‖, over fixed chunks (deterministic).
        let parts: Vec<(Vec<f64>, f64)> = x
            .par_chunks(d * 1024)
            .map(|chunk| {
                let mut num = vec![0f64; d];
                let mut den = 0f64;
                for row in chunk.chunks(d) {
                    let dist = row
                        .iter()
                        .zip(&y)
                        .map(|(&a, b)| (a as f64 - b).powi(2))
                        .sum::<f64>()
                        .sqrt()
                        .max(1e-12);
                    for (ni, &v) in num.iter_mut().zip(row) {
                        *ni += v as f64 / dist;
                    }
                    den += 1.0 / dist;
                }
                (num, den)
            })
            .collect();
        let mut num = vec![0f64; d];
        let mut den = 0f64;
        for (p, q) in parts {
            num.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
            den += q;
        }
        let next: Vec<f64> = num.iter().map(|v| v / den).collect();
        let moved = next
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let scale = y.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
        y = next;
        if moved <= tol * scale {
            break;
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn april_init_has_tied_weights_and_decoder_norm() {
        let sae = Sae::init_april(16, 40, 0.1, 3);
        assert_eq!(sae.w_enc, sae.w_dec);
        for n in sae.decoder_norms() {
            assert!((n - 0.1).abs() < 1e-6, "norm {n}");
        }
        assert!(sae.b_enc.iter().chain(&sae.b_dec).all(|&v| v == 0.0));
        assert_ne!(Sae::init_april(16, 40, 0.1, 4).w_dec, sae.w_dec);
    }

    #[test]
    fn folding_the_scale_keeps_features_and_reconstructions() {
        for apply in [false, true] {
            let mut sae = Sae::init_april(8, 12, 0.5, 1);
            sae.apply_b_dec_to_input = apply;
            sae.b_dec = (0..8).map(|i| i as f32 * 0.1 - 0.3).collect();
            sae.b_enc = (0..12).map(|i| (i % 3) as f32 * 0.05).collect();
            let s = 2.5f32;
            let x: Vec<f32> = (0..3 * 8)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.2)
                .collect();
            let xs: Vec<f32> = x.iter().map(|v| v * s).collect();
            let f_train = sae.encode(&xs);
            let xhat_train = sae.decode(&f_train);
            let raw = sae.fold_scaling(s);
            let f_raw = raw.encode(&x);
            let xhat_raw = raw.decode(&f_raw);
            for (a, b) in f_train.iter().zip(&f_raw) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
            for (a, b) in xhat_train.iter().zip(&xhat_raw) {
                assert!((a / s - b).abs() < 1e-5, "{a} vs {b}");
            }
            let back = raw.unfold_scaling(s);
            for (a, b) in back.w_enc.iter().zip(&sae.w_enc) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn feature_major_encode_is_the_transpose_of_encode() {
        for apply in [false, true] {
            let mut sae = Sae::init_april(8, 12, 0.5, 1);
            sae.apply_b_dec_to_input = apply;
            sae.b_dec = (0..8).map(|i| i as f32 * 0.1 - 0.3).collect();
            sae.b_enc = (0..12).map(|i| (i % 3) as f32 * 0.05 - 0.05).collect();
            let x: Vec<f32> = (0..5 * 8)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.2)
                .collect();
            let f = sae.encode(&x);
            let ft = sae.encode_feature_major(&x);
            for t in 0..5 {
                for i in 0..12 {
                    assert!((f[t * 12 + i] - ft[i * 5 + t]).abs() < 1e-6);
                }
            }
            assert!(f.contains(&0.0) && f.iter().any(|&v| v > 0.0));
        }
    }

    #[test]
    fn gated_encodes_agree_and_fold_the_scale() {
        let mut sae = Sae::init_gated(8, 12, 0.5, 1);
        sae.b_dec = (0..8).map(|i| i as f32 * 0.1 - 0.3).collect();
        sae.b_enc = (0..12).map(|i| (i % 3) as f32 * 0.05 - 0.05).collect();
        sae.r_mag = (0..12).map(|i| (i % 4) as f32 * 0.2 - 0.3).collect();
        sae.b_mag = (0..12).map(|i| (i % 5) as f32 * 0.1 - 0.25).collect();
        let x: Vec<f32> = (0..5 * 8)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.2)
            .collect();
        let f = sae.encode(&x);
        let ft = sae.encode_feature_major(&x);
        let raw = sae.fold_scaling(2.0);
        let xs: Vec<f32> = x.iter().map(|v| v / 2.0).collect();
        let f_raw = raw.encode(&xs);
        let sub = sae.encoder_subset(&[3, 7]);
        for t in 0..5 {
            let row = &x[t * 8..(t + 1) * 8];
            for i in 0..12 {
                let v = f[t * 12 + i];
                assert!((v - ft[i * 5 + t]).abs() < 1e-6);
                assert!((v - f_raw[t * 12 + i]).abs() < 1e-5);
                assert!((v - sae.feature_activation(i, row)).abs() < 1e-6);
                // By hand: π = (x − b_dec)·W_enc,i, gate π + b_gate > 0, magnitude ReLU.
                let w = &sae.w_enc[i * 8..(i + 1) * 8];
                let pi: f32 = (0..8).map(|j| (row[j] - sae.b_dec[j]) * w[j]).sum();
                let want = if pi + sae.b_enc[i] > 0.0 {
                    (sae.r_mag[i].exp() * pi + sae.b_mag[i]).max(0.0)
                } else {
                    0.0
                };
                assert!((v - want).abs() < 1e-5, "{v} vs {want}");
            }
            assert_eq!(
                sub.feature_activation(1, row),
                sae.feature_activation(7, row)
            );
        }
        assert!(f.contains(&0.0) && f.iter().any(|&v| v > 0.0));
    }

    #[test]
    fn geometric_median_ignores_an_outlier() {
        // Four points at the corners of a square around (1, 1) and one far outlier: the
        // median stays near (1, 1) while the mean moves to (21, 1).
        let x = [0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0, 101.0, 1.0];
        let m = geometric_median(&x, 2, 500, 1e-10);
        // (The exact median is at x ≈ 1.62: the outlier pulls with unit force whatever its distance.)
        assert!(
            (m[0] - 1.62).abs() < 0.05 && (m[1] - 1.0).abs() < 1e-3,
            "{m:?}"
        );
    }
}
