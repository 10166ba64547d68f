//! The fast engine's encoder: `pre = (x − b_dec) · W_encᵀ + b_enc` into its scratch buffer,
//! through the AMX bf16 screen ([`crate::kernels::screened`]) when the CPU has it and the batch
//! is sparse enough, else the f32 GEMM.

use rayon::prelude::*;

use super::fast::FastEngine;
use super::fast_rows::{active_by_row, grow};
use crate::kernels::matmul;
use crate::kernels::screened::Positive;

/// Above this fraction of pre-activations recomputed in f32, the AMX screen is slower than the
/// f32 GEMM (`examples/screen_bench.rs`: break-even near 5% at 768 → 4096, batch 1024).
pub const SCREEN_MAX: f64 = 0.04;

/// Rows screened first to decide between the screen and the f32 GEMM for a batch: two of the
/// screen's 128-row tasks, so both cores work on the probe too.
pub const SCREEN_PROBE: usize = 256;

impl FastEngine {
    /// xin (if centred) and `pre = xin · W_encᵀ (+ b_enc if bias)` into the scratch buffers.
    pub(super) fn encode_pre(&mut self, x: &[f32], rows: usize, bias: bool) {
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        grow(&mut self.pre, rows * s);
        self.centre_input(x, rows);
        let b_enc = &self.sae.b_enc;
        self.pre[..rows * s].par_chunks_mut(s).for_each(|row| {
            if bias {
                row.copy_from_slice(b_enc)
            } else {
                row.fill(0.0)
            }
        });
        let xin: &[f32] = if self.sae.apply_b_dec_to_input {
            &self.xin[..rows * d]
        } else {
            x
        };
        matmul(
            (rows, s, d),
            &mut self.pre,
            true,
            xin,
            (d, 1),
            &self.sae.w_enc,
            (1, d),
        );
    }

    /// The positive pre-activations `b_enc + xin · W_encᵀ` per row, for a ReLU, screened on AMX
    /// bf16 tiles (exact wherever positive: [`crate::kernels::screened::Screen`]), writing only
    /// the (feature, value) lists a sparse step reads: the dense `[rows, s]` buffer is neither
    /// written nor scanned.
    ///
    /// Screening pays only while few pre-activations are near or above zero (each one is
    /// recomputed), so the first [`SCREEN_PROBE`] rows are screened and, if more than
    /// [`SCREEN_MAX`] of them needed recomputing, this returns `None`, as it does without AMX or
    /// for a non-finite input: the caller then encodes densely ([`FastEngine::encode_pre`]). The
    /// choice depends only on the weights and the batch, so a resumed run makes the same one.
    pub(super) fn encode_relu_active(&mut self, x: &[f32], rows: usize) -> Option<Vec<Positive>> {
        self.last_recomputed = None;
        let (d, s) = (self.sae.d_in, self.sae.d_sae);
        if self.f32_encoder
            || !self
                .screen
                .prepare(&self.sae.w_enc, &self.sae.b_enc, (d, s))
        {
            return None;
        }
        self.centre_input(x, rows);
        let xin: &[f32] = if self.sae.apply_b_dec_to_input {
            &self.xin[..rows * d]
        } else {
            x
        };
        let (w, b) = (&self.sae.w_enc, &self.sae.b_enc);
        let probe = rows.min(SCREEN_PROBE);
        let (mut active, first) = self.screen.relu_positive(xin, probe, w, b)?;
        if first as f64 > SCREEN_MAX * (probe * s) as f64 {
            return None;
        }
        let (rest, n) = self
            .screen
            .relu_positive(&xin[probe * d..], rows - probe, w, b)?;
        active.extend(rest);
        self.last_recomputed = Some(first + n);
        Some(active)
    }

    /// [`FastEngine::encode_relu_active`], or the f32 GEMM and its positive entries where the
    /// screen declines.
    pub(super) fn relu_active(&mut self, x: &[f32], rows: usize) -> Vec<Positive> {
        if let Some(active) = self.encode_relu_active(x, rows) {
            return active;
        }
        self.encode_pre(x, rows, true);
        active_by_row(&self.pre[..rows * self.sae.d_sae], self.sae.d_sae)
    }

    /// xin = x − b_dec when the input is centred.
    fn centre_input(&mut self, x: &[f32], rows: usize) {
        let d = self.sae.d_in;
        if self.sae.apply_b_dec_to_input {
            grow(&mut self.xin, rows * d);
            let b_dec = &self.sae.b_dec;
            self.xin[..rows * d]
                .par_chunks_mut(d)
                .zip(x.par_chunks(d))
                .for_each(|(o, xr)| {
                    o.iter_mut()
                        .zip(xr.iter().zip(b_dec))
                        .for_each(|(o, (a, b))| *o = a - b)
                });
        }
    }
}
