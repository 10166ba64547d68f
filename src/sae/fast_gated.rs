//! The fast engine's step for a gated SAE (the maths: [`super::plain_gated`]). The active set
//! is the gate's, `{(t, i): π_gate,ti > 0}`: the features `f`, the gate activations
//! `a = ReLU(π_gate)` and every gradient of a pre-activation vanish outside it, so after the
//! encoder GEMM (`P = xin · W_encᵀ`) everything runs over the active pairs only: both
//! reconstructions (`x̂` from `f`, `x̃` from `a`), and per feature the decoder, encoder, bias,
//! `r_mag` and `b_mag` gradients.

use rayon::prelude::*;

use super::fast::FastEngine;
use super::fast_rows::{
    by_feature, col_sums, grow, reconstruction_stats, squared_distance, subtract_weighted_rows,
    RowStats,
};
use super::step::{Reconstruction, StepStats};
use crate::kernels::{axpy, dot};

/// Per token: the open gates' features and their `P` values.
type Active = Vec<(Vec<u32>, Vec<f32>)>;

impl FastEngine {
    /// Per row the features whose gate is open, π_gate = P + b_gate > 0, with their `P`. Only
    /// positive π_gate are read, so the encoder may be the screened one (exact there), which
    /// hands over just those.
    fn gated_active(&mut self, x: &[f32], rows: usize) -> Active {
        let mut active = self.relu_active(x, rows);
        let b_gate = &self.sae.b_enc;
        active.par_iter_mut().for_each(|(idx, val)| {
            for (&i, v) in idx.iter().zip(val.iter_mut()) {
                *v -= b_gate[i as usize];
            }
        });
        active
    }

    /// Forward and backward of a gated SAE: fills `self.grads`, returns the statistics.
    pub(super) fn backward_gated(&mut self, x: &[f32], rows: usize, lam: f32) -> StepStats {
        let per_row = self.gated_active(x, rows);
        let weights = self.sae.decoder_norms();
        let row_stats = self.gated_rows(x, rows, &per_row, &weights);
        let fired = self.gated_features(x, rows, &per_row, &weights, lam);
        let (sq_err, l1_sum, active) = row_stats
            .iter()
            .fold((0.0, 0.0, 0), |(a, b, c), (x, y, z)| (a + x, b + y, c + z));
        StepStats {
            rows,
            sq_err,
            l1_sum,
            active,
            fired,
            grad_norm: 0.0,
        }
    }

    /// Row phase: G_t = (2/B)(x̂_t − x_t) into `g`, H_t = (2/B)(x̃_t − x_t) into `h`; per row
    /// the squared error, the L1 term and the number of features on.
    fn gated_rows(
        &mut self,
        x: &[f32],
        rows: usize,
        per_row: &Active,
        weights: &[f32],
    ) -> Vec<(f64, f64, u64)> {
        let d = self.sae.d_in;
        let two_b = 2.0 / rows as f32;
        let sae = &self.sae;
        grow(&mut self.g, rows * d);
        grow(&mut self.h, rows * d);
        self.g[..rows * d]
            .par_chunks_mut(d)
            .zip(self.h[..rows * d].par_chunks_mut(d))
            .zip(x.par_chunks(d))
            .zip(per_row.par_iter())
            .map(|(((g, h), xr), (idx, pv))| {
                g.copy_from_slice(&sae.b_dec);
                h.copy_from_slice(&sae.b_dec);
                let (mut l1, mut n) = (0f64, 0u64);
                for (&i, &p) in idx.iter().zip(pv) {
                    let i = i as usize;
                    let w = &sae.w_dec[i * d..(i + 1) * d];
                    let f = sae.activate(i, p);
                    if f > 0.0 {
                        axpy(f, w, g);
                        n += 1;
                    }
                    let a = p + sae.b_enc[i];
                    axpy(a, w, h);
                    l1 += (a * weights[i]) as f64;
                }
                let mut sq = 0f64;
                for ((gi, hi), &xi) in g.iter_mut().zip(h.iter_mut()).zip(xr) {
                    let e = *gi - xi;
                    sq += (e as f64) * (e as f64);
                    *gi = two_b * e;
                    *hi = two_b * (*hi - xi);
                }
                (sq, l1, n)
            })
            .collect()
    }

    /// Feature phase, per feature over its open gates: ∂π_mag = [f > 0]·G_t·W_dec,i,
    /// ∂π_gate = H_t·W_dec,i + λ n_i / B, ∂P = e_i ∂π_mag + ∂π_gate; then ∂b_dec. Fills
    /// `self.grads`, returns how often each feature was on.
    fn gated_features(
        &mut self,
        x: &[f32],
        rows: usize,
        per_row: &Active,
        weights: &[f32],
        lam: f32,
    ) -> Vec<u32> {
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        let lam_b = lam / rows as f32;
        let sae = &self.sae;
        let (col_ptr, e_tok, e_p) = by_feature(per_row, s);
        let (gbuf, hbuf) = (&self.g[..rows * d], &self.h[..rows * d]);
        let xin: &[f32] = if sae.apply_b_dec_to_input {
            &self.xin[..rows * d]
        } else {
            x
        };
        let [g_wenc, g_bgate, g_wdec, g_bdec, g_rmag, g_bmag] = &mut self.grads;
        let fired: Vec<u32> = g_wdec
            .par_chunks_mut(d)
            .zip(g_wenc.par_chunks_mut(d))
            .zip(g_bgate.par_iter_mut())
            .zip(g_rmag.par_iter_mut().zip(g_bmag.par_iter_mut()))
            .enumerate()
            .map(|(i, (((gd, ge), gb), (gr, gm)))| {
                gd.fill(0.0);
                ge.fill(0.0);
                let w = &sae.w_dec[i * d..(i + 1) * d];
                let e = sae.r_mag[i].exp();
                let l1_grad = lam_b * weights[i];
                let (mut asum, mut bsum, mut msum, mut rsum, mut fired) =
                    (0f32, 0f32, 0f32, 0f32, 0);
                for k in col_ptr[i]..col_ptr[i + 1] {
                    let t = e_tok[k] as usize;
                    let p = e_p[k];
                    let (g_t, h_t) = (&gbuf[t * d..(t + 1) * d], &hbuf[t * d..(t + 1) * d]);
                    let f = sae.activate(i, p);
                    let a = p + sae.b_enc[i];
                    let d_mag = if f > 0.0 { dot(g_t, w) } else { 0.0 };
                    let d_gate = dot(h_t, w) + l1_grad;
                    if f > 0.0 {
                        axpy(f, g_t, gd);
                        fired += 1;
                    }
                    axpy(a, h_t, gd);
                    axpy(e * d_mag + d_gate, &xin[t * d..(t + 1) * d], ge);
                    asum += a;
                    bsum += d_gate;
                    msum += d_mag;
                    rsum += d_mag * p;
                }
                *gb = bsum;
                *gm = msum;
                *gr = rsum * e;
                if asum > 0.0 && weights[i] > 0.0 {
                    axpy(lam_b * asum / weights[i], w, gd);
                }
                fired
            })
            .collect();
        // ∂b_dec = Σ_t (G_t + H_t) − [centred] Σ_i (∂b_gate,i + e_i ∂b_mag,i) W_enc,i.
        let mut gb = col_sums(gbuf, d);
        gb.iter_mut()
            .zip(col_sums(hbuf, d))
            .for_each(|(a, b)| *a += b);
        if sae.apply_b_dec_to_input {
            let c: Vec<f32> = (0..s)
                .map(|i| g_bgate[i] + sae.r_mag[i].exp() * g_bmag[i])
                .collect();
            subtract_weighted_rows(&mut gb, &c, &sae.w_enc, d);
        }
        g_bdec.copy_from_slice(&gb);
        fired
    }

    /// Encode and decode a gated SAE without updating anything.
    pub(super) fn reconstruct_gated(&mut self, x: &[f32], rows: usize) -> Reconstruction {
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        let per_row = self.gated_active(x, rows);
        let weights = self.sae.decoder_norms();
        let sae = &self.sae;
        let mut x_hat = vec![0f32; rows * d];
        let per_row: Vec<RowStats> = x_hat
            .par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .zip(per_row.par_iter())
            .map(|((xh, xr), (idx, pv))| {
                xh.copy_from_slice(&sae.b_dec);
                let (mut l1, mut on) = (0f64, vec![]);
                for (&i, &p) in idx.iter().zip(pv) {
                    let f = sae.activate(i as usize, p);
                    if f > 0.0 {
                        axpy(f, &sae.w_dec[i as usize * d..(i as usize + 1) * d], xh);
                        on.push(i);
                    }
                    l1 += ((p + sae.b_enc[i as usize]) * weights[i as usize]) as f64;
                }
                (squared_distance(xh, xr), l1, on)
            })
            .collect();
        let stats = reconstruction_stats(rows, s, per_row);
        Reconstruction { x_hat, stats }
    }
}
