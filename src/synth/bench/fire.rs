//! Which features fire in a row: the Gaussian copula's test z_i = m_i + s_i η_i > t_i, decided
//! fast and exactly. It is the generator's whole cost (n features a row), so:
//!
//! - the cut c_i = (t_i − m_i) / s_i (m = F g, the shared low-rank part) is computed for a group
//!   of rows at a time, feature chunk by feature chunk, in wide vectors (AVX-512 / AVX2 when the
//!   CPU has them), so the factor is read from cache once per group, not once per row — but only
//!   for the features tested in every row. A hierarchy's features (two thirds of the 16k preset)
//!   are tested only under a surviving parent, so their cuts are computed one at a time when
//!   asked ([`Firing::cut`], the same operations in the same order: the same bits);
//! - feature i fires with probability Q(c_i) (the normal's upper tail). Within each block of 64
//!   features, candidates are drawn by geometric skips at a bound q ≥ max Q(c_i) (Q at the grid
//!   point below the block's smallest cut) and a candidate is kept with probability Q(c_i) / q:
//!   exact thinning, with a few random numbers per block instead of 64. Blocks whose bound is
//!   large (the frequent features) draw one uniform per feature instead.
//! - Q(c) is read from a table on a grid of c: a uniform above the tail at the grid point below
//!   c rejects, one below the tail at the point above accepts, and only the rare one in between
//!   computes Q(c) itself — exact, since Q is monotone.

use super::normal::{upper_tail, RowRng};
use crate::kernels::simd::dispatch;
use rand_distr::{Distribution, StandardNormal};

/// The tail table's grid: Q(c) at c = C_LO + k / STEPS.
const C_LO: f64 = -9.0;
const C_HI: f64 = 9.0;
const STEPS: f64 = 64.0;
/// Features per thinning block.
const BLOCK: usize = 64;
/// Features per cache chunk (the factor's columns for it: rank × CHUNK f32).
const CHUNK: usize = 1024;
/// Above this bound a block draws one uniform per feature.
const DENSE_BOUND: f64 = 0.2;

/// Everything the test reads; no state.
#[derive(Debug, Clone)]
pub struct Firing {
    pub n: usize,
    pub rank: usize,
    /// Φ⁻¹(1 − p_i), f32 (as SAELens's thresholds).
    pub thresholds: Vec<f32>,
    /// 1 / s_i (1 without correlation).
    pub inv_noise_std: Vec<f32>,
    /// F transposed, `[rank, n]` (empty without correlation): the chunked cuts read it.
    pub factor_t: Vec<f32>,
    /// F, `[n, rank]`: one feature's cut reads a contiguous row.
    factor: Vec<f32>,
    tail: Vec<f64>,
}

/// One row's firing features, sorted: (feature, value).
pub type FiringRow = Vec<(u32, f32)>;

impl Firing {
    pub fn new(thresholds: Vec<f32>, inv_noise_std: Vec<f32>, factor_t: Vec<f32>) -> Firing {
        let n = thresholds.len();
        let rank = factor_t.len() / n.max(1);
        let tail = (0..=((C_HI - C_LO) * STEPS) as usize)
            .map(|k| upper_tail(C_LO + k as f64 / STEPS))
            .collect();
        let factor = (0..n * rank)
            .map(|j| factor_t[(j % rank) * n + j / rank])
            .collect();
        Firing {
            n,
            rank,
            thresholds,
            inv_noise_std,
            factor_t,
            factor,
            tail,
        }
    }

    /// The firing features `from..n` of a group of rows, each drawing from its own `rngs[r]`
    /// (so a row is the same in any group): per row its shared Gaussian g first, then the tests
    /// in feature order. Returns sorted (feature, 0.0) lists, and each row's g (features
    /// `0..from` are the hierarchy's, tested later with [`Firing::test`] at [`Firing::cut`],
    /// only where needed).
    pub fn fire(&self, rngs: &mut [RowRng], from: usize) -> (Vec<FiringRow>, Vec<Vec<f32>>) {
        let g: Vec<Vec<f32>> = rngs
            .iter_mut()
            .map(|rng| {
                (0..self.rank)
                    .map(|_| StandardNormal.sample(&mut *rng))
                    .collect()
            })
            .collect();
        let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::with_capacity(96); rngs.len()];
        let mut cut = vec![0f32; CHUNK];
        // Chunks stay aligned to multiples of CHUNK (and blocks to the chunk's start) whatever
        // `from` is, so the draws are those of a pass over every feature.
        for lo in (0..self.n).step_by(CHUNK) {
            let hi = (lo + CHUNK).min(self.n);
            let start = from.clamp(lo, hi);
            if start == hi {
                continue;
            }
            for (r, rng) in rngs.iter_mut().enumerate() {
                let c = &mut cut[..hi - start];
                cuts(self, &g[r], start, c);
                self.decide(c, start, rng, &mut out[r]);
            }
        }
        (out, g)
    }

    /// Feature `f`'s cut for a row whose shared Gaussian is `g`: exactly the value the chunked
    /// pass computes ([`cuts_body`]: the same multiplies and subtractions in the same order).
    #[inline]
    pub fn cut(&self, g: &[f32], f: usize) -> f32 {
        let mut c = self.thresholds[f];
        for (&gk, &x) in g
            .iter()
            .zip(&self.factor[f * self.rank..(f + 1) * self.rank])
        {
            c -= gk * x;
        }
        c * self.inv_noise_std[f]
    }

    /// One feature's test at cut `c`: fires with probability Q(c).
    #[inline]
    pub fn test(&self, rng: &mut RowRng, c: f32) -> bool {
        self.below_tail(rng.uniform(), c as f64)
    }

    /// The tests of features `lo .. lo + cut.len()`, block by block.
    // `!(skip < left)` on purpose: an infinite or NaN skip ends the block.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn decide(&self, cut: &[f32], lo: usize, rng: &mut RowRng, out: &mut Vec<(u32, f32)>) {
        for (b, block) in cut.chunks(BLOCK).enumerate() {
            let first = lo + b * BLOCK;
            let min = block.iter().copied().fold(f32::INFINITY, f32::min) as f64;
            let k = (min - C_LO) * STEPS;
            let bound = if k < 0.0 {
                1.0
            } else {
                self.tail[(k as usize).min(self.tail.len() - 1)]
            };
            if bound > DENSE_BOUND {
                for (i, &c) in block.iter().enumerate() {
                    if self.below_tail(rng.uniform(), c as f64) {
                        out.push(((first + i) as u32, 0.0));
                    }
                }
                continue;
            }
            // Bernoulli(bound) candidates by geometric skips, each kept w.p. Q(c) / bound.
            let log_miss = (-bound).ln_1p();
            let mut i = 0usize;
            loop {
                let skip = rng.uniform().ln() / log_miss;
                if !(skip < (block.len() - i) as f64) {
                    break;
                }
                i += skip as usize;
                if self.below_tail(rng.uniform() * bound, block[i] as f64) {
                    out.push(((first + i) as u32, 0.0));
                }
                i += 1;
            }
        }
    }

    /// Whether `v` < Q(c), from the table when it can tell.
    #[inline]
    fn below_tail(&self, v: f64, c: f64) -> bool {
        let k = (c - C_LO) * STEPS;
        if !(k >= 0.0 && k < (self.tail.len() - 1) as f64) {
            return v < upper_tail(c);
        }
        let k = k as usize;
        if v >= self.tail[k] {
            false
        } else if v < self.tail[k + 1] {
            true
        } else {
            v < upper_tail(c)
        }
    }
}

/// [`cuts_body`] in the widest vectors the CPU has.
fn cuts(f: &Firing, g: &[f32], lo: usize, cut: &mut [f32]) {
    dispatch!(cuts_avx512, cuts_avx2, cuts_body, (f, g, lo, cut))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn cuts_avx512(f: &Firing, g: &[f32], lo: usize, cut: &mut [f32]) {
    cuts_body(f, g, lo, cut)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cuts_avx2(f: &Firing, g: &[f32], lo: usize, cut: &mut [f32]) {
    cuts_body(f, g, lo, cut)
}

/// c_i = (t_i − Σ_k g_k F_ik) / s_i for i in `lo .. lo + cut.len()` (mul then sub, no fused
/// multiply-add: every instruction set gives the same bits).
#[inline(always)]
fn cuts_body(f: &Firing, g: &[f32], lo: usize, cut: &mut [f32]) {
    let hi = lo + cut.len();
    cut.copy_from_slice(&f.thresholds[lo..hi]);
    for (k, &gk) in g.iter().enumerate() {
        let col = &f.factor_t[k * f.n + lo..k * f.n + hi];
        for (c, &x) in cut.iter_mut().zip(col) {
            *c -= gk * x;
        }
    }
    for (c, &s) in cut.iter_mut().zip(&f.inv_noise_std[lo..hi]) {
        *c *= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_fires_each_feature_with_its_probability() {
        // No correlation: cut = threshold; probabilities from frequent to very rare, so both
        // the per-feature path and the skipping path are used.
        let p: Vec<f64> = (0..256).map(|i| 0.5 * 0.97f64.powi(i)).collect();
        let t: Vec<f32> = p
            .iter()
            .map(|&p| super::super::normal::quantile(1.0 - p) as f32)
            .collect();
        let f = Firing::new(t, vec![1.0; 256], vec![]);
        let rows = 40_000;
        let mut count = vec![0u32; 256];
        for r in 0..rows {
            let mut rng = [RowRng::for_row(5, 0, r)];
            for (i, _) in f.fire(&mut rng, 0).0.pop().unwrap() {
                count[i as usize] += 1;
            }
        }
        for (i, &c) in count.iter().enumerate() {
            let m = c as f64 / rows as f64;
            let sd = (p[i] * (1.0 - p[i]) / rows as f64).sqrt();
            assert!(
                (m - p[i]).abs() < 5.0 * sd + 1e-4,
                "feature {i}: {m} vs {}",
                p[i]
            );
        }
    }
}
