//! The pre-activations of a ReLU encoder, `pre[t, i] = b_i + x_t · w_i`, with the GEMM on AMX
//! bf16 tiles and the answer exact wherever it matters.
//!
//! A ReLU keeps only the positive pre-activations, and in a sparse autoencoder almost all are
//! negative. So the product runs in bf16 (x and W rounded to nearest, f32 accumulation), which
//! is off by at most `ε ‖x_t‖ ‖w_i‖` (ε ≈ 2⁻⁸: each rounding is within 2⁻⁹ relative, plus the
//! f32 sums); every entry whose estimate is above `−ε ‖x_t‖ ‖w_i‖` may be positive and is
//! recomputed in f32 (`b_i + dot(x_t, w_i)`), the rest are certainly ≤ 0 and keep the estimate.
//! The positive part — everything a ReLU SAE's forward and backward read — is therefore the f32
//! result, up to f32 summation order; the negative entries are approximate but stay negative.
//!
//! It declines (the caller runs the f32 GEMM) when AMX is unavailable or an input is not
//! finite, so NaN and Inf flow through the f32 path to the trainer's guard.

use rayon::prelude::*;

use super::amx::{self, Bf16Buf, Tiles, TILE_K};
use super::dot;

/// Rows per parallel task (A panel: 128 × d bf16, in L2 while the B panels stream past).
const ROW_BLOCK: usize = 128;

/// An encoder `(w [s, d], b [s])` packed for the screen: W as bf16 tiles, its row norms.
/// Build it once per weight update with [`Screen::prepare`], then encode any rows with
/// [`Screen::relu_pre`]; each row's result depends only on that row (not on how rows are split
/// between calls or threads).
#[derive(Default)]
pub struct Screen {
    packed: Bf16Buf,
    /// ε ‖w_i‖ (see the module doc).
    eps_w: Vec<f32>,
    d: usize,
    s: usize,
}

impl Screen {
    /// Packs `w`; false (the caller uses f32) when AMX is unavailable or `w`/`b` is not finite.
    pub fn prepare(&mut self, w: &[f32], b: &[f32], (d, s): (usize, usize)) -> bool {
        if !amx::available() || d == 0 || s == 0 || !b[..s].iter().all(|v| v.is_finite()) {
            return false;
        }
        let Some(w_norms) = row_norms(&w[..s * d], d) else {
            return false;
        };
        let k_steps = d.div_ceil(TILE_K);
        // ε: two bf16 roundings (2⁻⁹ each, relative), the f32 sums of both the tile product and
        // the recomputation (d · 2⁻²⁴ each), the estimate's own addition of b; 1% of slack.
        let eps = (2f64.powi(-8)
            + 2f64.powi(-17)
            + 2.0 * (k_steps * TILE_K) as f64 * 2f64.powi(-24)
            + 2f64.powi(-22))
            * 1.01;
        self.eps_w = w_norms.iter().map(|&n| (eps * n as f64) as f32).collect();
        let block_len = k_steps * TILE_K * amx::TILE_N;
        self.packed.resize(s.div_ceil(32) * 2 * block_len);
        self.packed
            .as_mut_slice()
            .par_chunks_mut(block_len)
            .enumerate()
            .for_each(|(j, block)| amx::pack_b_block(w, s, d, d, j, block));
        (self.d, self.s) = (d, s);
        true
    }

    /// `pre[rows, s] = b + x[rows, d] · wᵀ` for the `w` and `b` given to [`Screen::prepare`],
    /// exact where positive (see the module doc). Returns the number of entries recomputed in
    /// f32, or `None` (nothing written) if a row of `x` is not finite.
    pub fn relu_pre(
        &self,
        x: &[f32],
        rows: usize,
        w: &[f32],
        b: &[f32],
        pre: &mut [f32],
    ) -> Option<u64> {
        let s = self.s;
        let pre = &mut pre[..rows * s];
        self.screen(
            x,
            rows,
            w,
            b,
            pre.par_chunks_mut(ROW_BLOCK * s).map(Out::Dense),
        )
    }

    /// Only the positive entries of [`Screen::relu_pre`]'s result, per row: (features, values),
    /// in feature order — the same values, without writing or scanning the `[rows, s]` buffer
    /// (a ReLU SAE's sparse step reads nothing else). Returns them with the number of entries
    /// recomputed, or `None` if a row of `x` is not finite.
    pub fn relu_positive(
        &self,
        x: &[f32],
        rows: usize,
        w: &[f32],
        b: &[f32],
    ) -> Option<(Vec<Positive>, u64)> {
        let mut active: Vec<Positive> = vec![Default::default(); rows];
        let out = active.par_chunks_mut(ROW_BLOCK).map(Out::Positive);
        let recomputed = self.screen(x, rows, w, b, out)?;
        Some((active, recomputed))
    }

    /// The screen over `rows` rows of `x`, each task of [`ROW_BLOCK`] rows writing to its `Out`.
    // `!(v <= m)` on purpose: a NaN estimate is reopened.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn screen<'a>(
        &self,
        x: &[f32],
        rows: usize,
        w: &[f32],
        b: &[f32],
        outs: impl IndexedParallelIterator<Item = Out<'a>>,
    ) -> Option<u64> {
        let (d, s) = (self.d, self.s);
        let x = &x[..rows * d];
        let x_norms = row_norms(x, d)?;
        // Flushed denormals: each of the d products may lose up to 2⁻¹²⁶ · |other| (tiny).
        let floor = d as f32 * 1e-30;
        let k_steps = d.div_ceil(TILE_K);
        let lda = k_steps * TILE_K;
        let (packed, eps_w) = (self.packed.as_slice(), &self.eps_w[..]);
        let recomputed = outs
            .zip(x.par_chunks(ROW_BLOCK * d))
            .zip(x_norms.par_chunks(ROW_BLOCK))
            .map(|((mut out, x), x_norms)| {
                let n = x_norms.len();
                let mut buf = Bf16Buf::zeros(n.div_ceil(32) * 32 * lda);
                let a = buf.as_mut_slice();
                for (r, row) in x.chunks(d).enumerate() {
                    amx::convert(row, &mut a[r * lda..r * lda + d]);
                }
                let a = buf.as_slice();
                let tiles = Tiles::configure().expect("AMX, checked by `prepare`");
                let mut c = [0f32; 32 * 32];
                let mut count = 0u64;
                for pair in 0..s.div_ceil(32) {
                    let cols = pair * 32..((pair + 1) * 32).min(s);
                    let (b, eps_w) = (&b[cols.clone()], &eps_w[cols.clone()]);
                    for m0 in (0..n).step_by(32) {
                        tiles.block(&a[m0 * lda..], lda, packed, k_steps, pair * 2, &mut c);
                        for r in 0..32.min(n - m0) {
                            let t = m0 + r;
                            let est = &c[r * 32..r * 32 + cols.len()];
                            let bound = |j: usize| -(eps_w[j] * x_norms[t] + floor);
                            // Estimates first (a loop that vectorises), then the few that may
                            // be positive again in f32. `!(v <= m)` also reopens a NaN.
                            let mut open = false;
                            match &mut out {
                                Out::Dense(pre) => {
                                    let o = &mut pre[t * s + cols.start..t * s + cols.end];
                                    for (j, o) in o.iter_mut().enumerate() {
                                        *o = est[j] + b[j];
                                        open |= !(*o <= bound(j));
                                    }
                                }
                                Out::Positive(_) => {
                                    for j in 0..cols.len() {
                                        open |= !(est[j] + b[j] <= bound(j));
                                    }
                                }
                            }
                            if !open {
                                continue;
                            }
                            let xt = &x[t * d..(t + 1) * d];
                            for j in 0..cols.len() {
                                if est[j] + b[j] <= bound(j) {
                                    continue;
                                }
                                let col = cols.start + j;
                                let v = b[j] + dot(xt, &w[col * d..(col + 1) * d]);
                                count += 1;
                                match &mut out {
                                    Out::Dense(pre) => pre[t * s + col] = v,
                                    Out::Positive(active) if v > 0.0 => {
                                        active[t].0.push(col as u32);
                                        active[t].1.push(v);
                                    }
                                    Out::Positive(_) => {}
                                }
                            }
                        }
                    }
                }
                count
            })
            .sum();
        Some(recomputed)
    }
}

/// One row's positive pre-activations: (features, values), in feature order.
pub type Positive = (Vec<u32>, Vec<f32>);

/// Where one task of the screen puts its rows' results.
enum Out<'a> {
    /// All pre-activations, `[rows, s]`: estimates, exact where they may be positive.
    Dense(&'a mut [f32]),
    /// Per row, only the positive ones (exact).
    Positive(&'a mut [Positive]),
}

/// An upper bound on the Euclidean norm of each row (f32 sums of squares are within d · 2⁻²⁴
/// relative; the factor covers that), or `None` if any is not finite.
fn row_norms(m: &[f32], d: usize) -> Option<Vec<f32>> {
    let slack = 1.0 + d as f32 * 2f32.powi(-23);
    let norms: Vec<f32> = m.par_chunks(d).map(|r| dot(r, r).sqrt() * slack).collect();
    norms.iter().all(|v| v.is_finite()).then_some(norms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul;

    fn lcg(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    #[test]
    fn positive_part_equals_the_f32_gemm() {
        if !amx::available() {
            eprintln!("no AMX on this CPU: skipped");
            return;
        }
        // Ragged sizes: rows not a multiple of 32 or 128, d not of 32, s not of 32.
        let (rows, d, s) = (300, 100, 70);
        let x = lcg(1, rows * d, 2.0);
        let w = lcg(2, s * d, 0.4);
        let b = lcg(3, s, 0.3);
        let mut want = vec![0f32; rows * s];
        for t in 0..rows {
            want[t * s..(t + 1) * s].copy_from_slice(&b);
        }
        matmul((rows, s, d), &mut want, true, &x, (d, 1), &w, (1, d));
        let mut got = vec![f32::NAN; rows * s];
        let mut screen = Screen::default();
        assert!(screen.prepare(&w, &b, (d, s)));
        let recomputed = screen.relu_pre(&x, rows, &w, &b, &mut got).unwrap();
        // Rows are independent of how they are split between calls.
        let mut split = vec![f32::NAN; rows * s];
        let first = screen.relu_pre(&x, 45, &w, &b, &mut split).unwrap();
        let rest = screen
            .relu_pre(&x[45 * d..], rows - 45, &w, &b, &mut split[45 * s..])
            .unwrap();
        assert_eq!(first + rest, recomputed);
        assert!(split
            .iter()
            .zip(&got)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // The positive-only output is the positive part of the dense one, bit for bit.
        let (active, n) = screen.relu_positive(&x, rows, &w, &b).unwrap();
        assert_eq!(n, recomputed);
        for (t, (idx, val)) in active.iter().enumerate() {
            let row = &got[t * s..(t + 1) * s];
            let want_idx: Vec<u32> = (0..s as u32).filter(|&i| row[i as usize] > 0.0).collect();
            assert_eq!(idx, &want_idx, "row {t}");
            assert!(idx
                .iter()
                .zip(val)
                .all(|(&i, v)| v.to_bits() == row[i as usize].to_bits()));
        }
        let positive = want.iter().filter(|&&v| v > 0.0).count() as u64;
        assert!(recomputed >= positive && recomputed < (rows * s) as u64);
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            if e > 1e-5 || g > 0.0 {
                assert!(
                    (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "entry {i}: {g} vs {e}"
                );
            } else {
                assert!(g <= 0.0 && (g - e).abs() < 0.05, "entry {i}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn non_finite_inputs_fall_back() {
        if !amx::available() {
            return;
        }
        let (rows, d, s) = (4, 32, 32);
        let mut x = lcg(1, rows * d, 1.0);
        let mut w = lcg(2, s * d, 1.0);
        let b = vec![0.0; s];
        let mut screen = Screen::default();
        assert!(screen.prepare(&w, &b, (d, s)));
        x[5] = f32::NAN;
        let mut pre = vec![0f32; rows * s];
        assert_eq!(screen.relu_pre(&x, rows, &w, &b, &mut pre), None);
        assert!(screen.relu_positive(&x, rows, &w, &b).is_none());
        w[7] = f32::INFINITY;
        assert!(!screen.prepare(&w, &b, (d, s)));
    }
}
