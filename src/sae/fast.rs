//! The CPU f32 training engine: a dense GEMM for the encoder (on AMX bf16 tiles, exact where
//! positive, when the CPU has them: `fast_encode.rs`), sparse kernels for everything that
//! touches the (few) active features, fused Adam. See [`crate::sae::step`] for the maths.
//!
//! Cost per step with B tokens, d inputs, S features and L0 active features per token:
//! encoder `2·B·d·S` flops (GEMM), everything else `≈ 8·B·L0·d` (row gathers/scatters) plus Adam's
//! pass over the `2·S·d` weights. PyTorch's dense step does five `2·B·d·S` GEMMs.
//!
//! Determinism: every reduction runs over fixed chunks in a fixed order, and the dense/sparse
//! choice depends only on the data, so the same inputs give the same bits for a given thread
//! count (exact resume relies on it).

use rayon::prelude::*;

use super::fast_rows::{
    active_by_row, by_feature, col_sums, fired_counts, grow, reconstruction_stats,
    residual_gradient, scatter_rows, squared_distance, subtract_weighted_rows, RowStats, ROW_CHUNK,
};
use super::model::Sae;
use super::optim::{adam_update, clip_coefficient, global_norm, AdamState, AdamStep};
use super::step::{Engine, Reconstruction, StepConfig, StepStats};
use crate::kernels::screened::{Positive, Screen};
use crate::kernels::{axpy, dot, matmul};

/// Above this fraction of active (token, feature) pairs the dense GEMM path is faster.
pub const SPARSE_MAX_DENSITY: f64 = 0.06;

pub struct FastEngine {
    pub(super) sae: Sae,
    adam: AdamState,
    cfg: StepConfig,
    /// Force the dense path (tests compare both).
    pub force_dense: bool,
    /// Use the sparse path up to this density of active (token, feature) pairs.
    pub sparse_max_density: f64,
    /// Never screen the encoder on AMX bf16 tiles (tests and benchmarks compare both).
    pub f32_encoder: bool,
    /// Entries of the last screened encode recomputed in f32 (`None`: the f32 GEMM ran).
    pub last_recomputed: Option<u64>,
    pub(super) screen: Screen,
    /// In `PARAM_NAMES` order (the gated pair empty unless the SAE is gated).
    pub(super) grads: [Vec<f32>; 6],
    /// `[B, S]`: pre-activations, then (dense path) the features; a gated SAE's `P`.
    pub(super) pre: Vec<f32>,
    /// `[B, S]`: ∂L/∂pre (dense path only).
    dpre_dense: Vec<f32>,
    /// `[B, d]`: x − b_dec (only when the input is centred).
    pub(super) xin: Vec<f32>,
    /// `[B, d]`: x̂, then G = (2/B)(x̂ − x).
    pub(super) g: Vec<f32>,
    /// `[B, d]`: a gated SAE's gate-path gradient H = (2/B)(x̃ − x).
    pub(super) h: Vec<f32>,
}

impl FastEngine {
    pub fn new(sae: Sae, adam: AdamState, cfg: StepConfig) -> FastEngine {
        let lens = sae.param_lens();
        FastEngine {
            sae,
            adam,
            cfg,
            force_dense: false,
            sparse_max_density: SPARSE_MAX_DENSITY,
            f32_encoder: false,
            last_recomputed: None,
            screen: Screen::default(),
            grads: lens.map(|n| vec![0.0; n]),
            pre: vec![],
            dpre_dense: vec![],
            xin: vec![],
            g: vec![],
            h: vec![],
        }
    }

    /// The gradients of the last [`FastEngine::backward`], in `PARAM_NAMES` order (tests).
    pub fn grads(&self) -> &[Vec<f32>; 6] {
        &self.grads
    }

    /// The L1 weights `w_i`: decoder norms, or ones.
    fn l1_weights(&self) -> Vec<f32> {
        if self.cfg.decoder_norm_l1 {
            self.sae.decoder_norms()
        } else {
            vec![1.0; self.sae.d_sae]
        }
    }

    /// Forward and backward: fills `self.grads` and returns the statistics (grad_norm unset).
    pub fn backward(&mut self, x: &[f32], rows: usize, l1_coefficient: f32) -> StepStats {
        if self.sae.is_gated() {
            return self.backward_gated(x, rows, l1_coefficient);
        }
        let s = self.sae.d_sae;
        let dense = |active: u64, engine: &Self| {
            engine.force_dense
                || active as f64 / (rows * s).max(1) as f64 > engine.sparse_max_density
        };
        // The screen's positive entries straight to the sparse step; the dense pre-activations
        // only where the screen declines or the step is dense.
        if let Some(per_row) = self.encode_relu_active(x, rows) {
            let active: u64 = per_row.iter().map(|(idx, _)| idx.len() as u64).sum();
            if !dense(active, self) {
                return self.backward_sparse(x, rows, l1_coefficient, active, per_row);
            }
            scatter_rows(&mut self.pre, &per_row, s);
            return self.backward_dense(x, rows, l1_coefficient, active);
        }
        self.encode_pre(x, rows, true);
        let active: u64 = self.pre[..rows * s]
            .par_chunks(s * ROW_CHUNK)
            .map(|c| c.iter().filter(|&&v| v > 0.0).count() as u64)
            .sum();
        if dense(active, self) {
            self.backward_dense(x, rows, l1_coefficient, active)
        } else {
            let per_row = active_by_row(&self.pre[..rows * s], s);
            self.backward_sparse(x, rows, l1_coefficient, active, per_row)
        }
    }

    /// The step from the active (token, feature) pairs `per_row` (CSR: per row, features and
    /// values in feature order).
    fn backward_sparse(
        &mut self,
        x: &[f32],
        rows: usize,
        lam: f32,
        active: u64,
        per_row: Vec<Positive>,
    ) -> StepStats {
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        let apply = self.sae.apply_b_dec_to_input;
        let weights = self.l1_weights();
        let lam_b = lam / rows as f32;
        let two_b = 2.0 / rows as f32;

        // Row phase: x̂_t = b_dec + Σ f_ti W_dec,i, then G_t = (2/B)(x̂_t − x_t); the L1 term.
        grow(&mut self.g, rows * d);
        let (w_dec, b_dec) = (&self.sae.w_dec, &self.sae.b_dec);
        let per_row_stats: Vec<(f64, f64)> = self.g[..rows * d]
            .par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .zip(per_row.par_iter())
            .map(|((g, xr), (idx, val))| {
                g.copy_from_slice(b_dec);
                let mut l1 = 0f64;
                for (&i, &f) in idx.iter().zip(val) {
                    let i = i as usize;
                    axpy(f, &w_dec[i * d..(i + 1) * d], g);
                    l1 += (f * weights[i]) as f64;
                }
                let mut sq = 0f64;
                for (gi, &xi) in g.iter_mut().zip(xr) {
                    let e = *gi - xi;
                    sq += (e as f64) * (e as f64);
                    *gi = two_b * e;
                }
                (sq, l1)
            })
            .collect();

        let (col_ptr, e_tok, e_f) = by_feature(&per_row, s);

        // Feature phase, with W_dec,i and both gradient rows in L1 and each G_t read once:
        // ∂pre_ti = G_t·W_dec,i + λ w_i / B; ∂W_dec,i = Σ f_ti G_t; ∂W_enc,i = Σ ∂pre_ti xin_t;
        // ∂b_enc,i = Σ ∂pre_ti.
        let gbuf = &self.g[..rows * d];
        let xin: &[f32] = if apply { &self.xin[..rows * d] } else { x };
        let decoder_norm_l1 = self.cfg.decoder_norm_l1;
        let [g_wenc, g_benc, g_wdec, g_bdec, ..] = &mut self.grads;
        g_wdec
            .par_chunks_mut(d)
            .zip(g_wenc.par_chunks_mut(d))
            .zip(g_benc.par_iter_mut())
            .enumerate()
            .for_each(|(i, ((gd, ge), gb))| {
                gd.fill(0.0);
                ge.fill(0.0);
                let w = &w_dec[i * d..(i + 1) * d];
                let l1_grad = lam_b * weights[i];
                let mut fsum = 0f32;
                let mut bsum = 0f32;
                for k in col_ptr[i]..col_ptr[i + 1] {
                    let t = e_tok[k] as usize;
                    let g_t = &gbuf[t * d..(t + 1) * d];
                    let dp = dot(g_t, w) + l1_grad;
                    axpy(e_f[k], g_t, gd);
                    axpy(dp, &xin[t * d..(t + 1) * d], ge);
                    fsum += e_f[k];
                    bsum += dp;
                }
                *gb = bsum;
                if decoder_norm_l1 && fsum > 0.0 && weights[i] > 0.0 {
                    axpy(lam_b * fsum / weights[i], w, gd);
                }
            });
        // ∂b_dec = Σ_t G_t − [centred] Σ_t Σ_i ∂pre_ti W_enc,i = Σ_t G_t − Σ_i ∂b_enc,i W_enc,i.
        let mut gb = col_sums(gbuf, d);
        if apply {
            subtract_weighted_rows(&mut gb, g_benc, &self.sae.w_enc, d);
        }
        g_bdec.copy_from_slice(&gb);

        let fired: Vec<u32> = (0..s)
            .map(|i| (col_ptr[i + 1] - col_ptr[i]) as u32)
            .collect();
        let (sq_err, l1_sum) = per_row_stats
            .iter()
            .fold((0.0, 0.0), |(a, b), (c, e)| (a + c, b + e));
        StepStats {
            rows,
            sq_err,
            l1_sum,
            active,
            fired,
            grad_norm: 0.0,
        }
    }

    fn backward_dense(&mut self, x: &[f32], rows: usize, lam: f32, active: u64) -> StepStats {
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        let apply = self.sae.apply_b_dec_to_input;
        let weights = self.l1_weights();
        let lam_b = lam / rows as f32;
        let two_b = 2.0 / rows as f32;

        // f = ReLU(pre), in place.
        let f = &mut self.pre[..rows * s];
        f.par_chunks_mut(s * ROW_CHUNK).for_each(|c| {
            c.iter_mut().for_each(|v| *v = v.max(0.0));
        });
        let f = &self.pre[..rows * s];

        // x̂ = f · W_dec + b_dec, then G = (2/B)(x̂ − x).
        grow(&mut self.g, rows * d);
        let b_dec = &self.sae.b_dec;
        self.g[..rows * d]
            .par_chunks_mut(d)
            .for_each(|r| r.copy_from_slice(b_dec));
        matmul(
            (rows, d, s),
            &mut self.g,
            true,
            f,
            (s, 1),
            &self.sae.w_dec,
            (d, 1),
        );
        let sq_err = residual_gradient(&mut self.g[..rows * d], x, two_b, d);

        // ∂pre = [f > 0] · (G · W_decᵀ + λ w / B).
        grow(&mut self.dpre_dense, rows * s);
        let gbuf = &self.g[..rows * d];
        matmul(
            (rows, s, d),
            &mut self.dpre_dense,
            false,
            gbuf,
            (d, 1),
            &self.sae.w_dec,
            (1, d),
        );
        let l1_sum: f64 = self.dpre_dense[..rows * s]
            .par_chunks_mut(s)
            .zip(f.par_chunks(s))
            .map(|(dp, fr)| {
                let mut l1 = 0f64;
                for i in 0..s {
                    if fr[i] > 0.0 {
                        dp[i] += lam_b * weights[i];
                        l1 += (fr[i] * weights[i]) as f64;
                    } else {
                        dp[i] = 0.0;
                    }
                }
                l1
            })
            .collect::<Vec<f64>>()
            .into_iter()
            .sum();
        let dpre = &self.dpre_dense[..rows * s];
        let xin: &[f32] = if apply { &self.xin[..rows * d] } else { x };

        let [g_wenc, g_benc, g_wdec, g_bdec, ..] = &mut self.grads;
        // ∂W_dec = fᵀ · G (+ the decoder-norm term), ∂W_enc = ∂preᵀ · xin.
        matmul((s, d, rows), g_wdec, false, f, (1, s), gbuf, (d, 1));
        matmul((s, d, rows), g_wenc, false, dpre, (1, s), xin, (d, 1));
        let fsum = col_sums(f, s);
        if self.cfg.decoder_norm_l1 {
            let w_dec = &self.sae.w_dec;
            g_wdec.par_chunks_mut(d).enumerate().for_each(|(i, gd)| {
                if fsum[i] > 0.0 && weights[i] > 0.0 {
                    axpy(lam_b * fsum[i] / weights[i], &w_dec[i * d..(i + 1) * d], gd);
                }
            });
        }
        g_benc.copy_from_slice(&col_sums(dpre, s));
        let mut gb = col_sums(gbuf, d);
        if apply {
            subtract_weighted_rows(&mut gb, g_benc, &self.sae.w_enc, d);
        }
        g_bdec.copy_from_slice(&gb);

        let fired = fired_counts(f, s);
        StepStats {
            rows,
            sq_err,
            l1_sum,
            active,
            fired,
            grad_norm: 0.0,
        }
    }
}

/// Removes from each decoder gradient row its component along the (unit) decoder row.
pub fn remove_parallel_component(g_wdec: &mut [f32], w_dec: &[f32], d: usize) {
    g_wdec
        .par_chunks_mut(d)
        .zip(w_dec.par_chunks(d))
        .for_each(|(g, w)| {
            let nn = dot(w, w);
            if nn > 0.0 {
                let c = dot(g, w) / nn;
                axpy(-c, w, g);
            }
        });
}

impl Engine for FastEngine {
    fn step(
        &mut self,
        x: &[f32],
        rows: usize,
        lr: f32,
        l1_coefficient: f32,
    ) -> crate::sae::Result<StepStats> {
        let mut stats = self.backward(x, rows, l1_coefficient);
        let d = self.sae.d_in;
        if self.cfg.unit_norm_decoder {
            remove_parallel_component(&mut self.grads[2], &self.sae.w_dec, d);
        }
        let norm = global_norm(&self.grads.each_ref().map(|g| &g[..]));
        stats.grad_norm = norm;
        let coef = clip_coefficient(norm, self.cfg.clip_norm);
        self.adam.t += 1;
        let st = AdamStep::new(&self.cfg.adam, lr, self.adam.t, coef);
        let AdamState { m, v, .. } = &mut self.adam;
        for (k, p) in self.sae.params_mut().into_iter().enumerate() {
            adam_update(&self.cfg.adam, &st, p, &self.grads[k], &mut m[k], &mut v[k]);
        }
        if self.cfg.unit_norm_decoder {
            self.sae.normalize_decoder();
        }
        Ok(stats)
    }

    fn reconstruct(&mut self, x: &[f32], rows: usize) -> crate::sae::Result<Reconstruction> {
        if self.sae.is_gated() {
            return Ok(self.reconstruct_gated(x, rows));
        }
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        let active = self.relu_active(x, rows);
        let weights = self.l1_weights();
        let w_dec = &self.sae.w_dec;
        let mut x_hat = vec![0f32; rows * d];
        let per_row: Vec<RowStats> = x_hat
            .par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .zip(active.into_par_iter())
            .map(|((xh, xr), (idx, val))| {
                xh.copy_from_slice(&self.sae.b_dec);
                let mut l1 = 0f64;
                for (&i, &v) in idx.iter().zip(&val) {
                    let i = i as usize;
                    axpy(v, &w_dec[i * d..(i + 1) * d], xh);
                    l1 += (v * weights[i]) as f64;
                }
                (squared_distance(xh, xr), l1, idx)
            })
            .collect();
        let stats = reconstruction_stats(rows, s, per_row);
        Ok(Reconstruction { x_hat, stats })
    }

    fn snapshot(&self) -> crate::sae::Result<(Sae, AdamState)> {
        Ok((self.sae.clone(), self.adam.clone()))
    }

    fn restore(&mut self, sae: &Sae, adam: &AdamState) -> crate::sae::Result<()> {
        self.sae = sae.clone();
        self.adam = adam.clone();
        if self.grads.each_ref().map(|g| g.len()) != sae.param_lens() {
            self.grads = sae.param_lens().map(|n| vec![0.0; n]);
        }
        Ok(())
    }

    fn name(&self) -> String {
        "fast-cpu".into()
    }
}
