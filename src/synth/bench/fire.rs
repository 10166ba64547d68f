//! Which features fire in a row: the Gaussian copula's test z_i = m_i + s_i η_i > t_i, decided
//! fast and exactly. It is most of the generator's cost (n features a row), so:
//!
//! - the cut c_i = (t_i − m_i) / s_i (m = F g, the shared low-rank part) is computed for a group
//!   of rows at a time, chunk by chunk of features ([`Cuts::many`], `cuts.rs`) — but only for
//!   the features tested in every row. A hierarchy's features (two thirds of the 16k preset)
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

use super::cuts::Cuts;
use super::normal::{upper_tail, RowRng};
use rand_distr::{Distribution, StandardNormal};

/// The tail table's grid: Q(c) at c = C_LO + k / STEPS.
const C_LO: f64 = -9.0;
const C_HI: f64 = 9.0;
const STEPS: f64 = 64.0;
/// Features per thinning block.
const BLOCK: usize = 64;
/// Features per chunk of cuts (a group's cuts for a chunk stay in cache while it is decided).
const CHUNK: usize = 1024;
/// Above this bound a block draws one uniform per feature.
const DENSE_BOUND: f64 = 0.2;

/// Everything the test reads; no state.
#[derive(Debug, Clone)]
pub struct Firing {
    cuts: Cuts,
    tail: Vec<f64>,
    /// ln(1 − tail[k]): the geometric skips' denominator at each bound.
    log_miss: Vec<f64>,
}

/// One row's firing features, sorted: (feature, value).
pub type FiringRow = Vec<(u32, f32)>;

impl Firing {
    /// From the thresholds Φ⁻¹(1 − p_i), 1 / s_i and F transposed (`[rank, n]`, empty without
    /// correlation).
    pub fn new(thresholds: Vec<f32>, inv_noise_std: Vec<f32>, factor_t: &[f32]) -> Firing {
        let tail: Vec<f64> = (0..=((C_HI - C_LO) * STEPS) as usize)
            .map(|k| upper_tail(C_LO + k as f64 / STEPS))
            .collect();
        Firing {
            cuts: Cuts::new(thresholds, inv_noise_std, factor_t),
            log_miss: tail.iter().map(|&q| (-q).ln_1p()).collect(),
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
                (0..self.cuts.rank)
                    .map(|_| StandardNormal.sample(&mut *rng))
                    .collect()
            })
            .collect();
        let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::with_capacity(96); rngs.len()];
        let mut cut = vec![0f32; rngs.len() * CHUNK];
        // Chunks stay aligned to multiples of CHUNK (and blocks to the chunk's start) whatever
        // `from` is, so the draws are those of a pass over every feature.
        let n = self.cuts.n;
        for lo in (0..n).step_by(CHUNK) {
            let hi = (lo + CHUNK).min(n);
            let start = from.clamp(lo, hi);
            if start == hi {
                continue;
            }
            let len = hi - start;
            self.cuts.many(&g, start, &mut cut[..rngs.len() * len]);
            for ((rng, c), out) in rngs.iter_mut().zip(cut.chunks(len)).zip(&mut out) {
                self.decide(c, start, rng, out);
            }
        }
        (out, g)
    }

    /// Feature `f`'s cut for a row whose shared Gaussian is `g`: the bits the chunked pass
    /// computes.
    #[inline]
    pub fn cut(&self, g: &[f32], f: usize) -> f32 {
        self.cuts.one(g, f)
    }

    /// The cuts of features `lo .. lo + len` for rows with shared Gaussians `g`, `[rows, len]`:
    /// the same bits as [`Firing::cut`], for features every row tests (the hierarchy's roots).
    pub fn cuts(&self, g: &[Vec<f32>], lo: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0f32; g.len() * len];
        self.cuts.many(g, lo, &mut out);
        out
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
            let k = (smallest(block) as f64 - C_LO) * STEPS;
            let at = (k as usize).min(self.tail.len() - 1);
            let bound = if k < 0.0 { 1.0 } else { self.tail[at] };
            if bound > DENSE_BOUND {
                for (i, &c) in block.iter().enumerate() {
                    if self.below_tail(rng.uniform(), c as f64) {
                        out.push(((first + i) as u32, 0.0));
                    }
                }
                continue;
            }
            // Bernoulli(bound) candidates by geometric skips, each kept w.p. Q(c) / bound.
            let log_miss = self.log_miss[at];
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

/// The smallest value of a block, in 16 independent lanes (one chain of 64 dependent minimums
/// cost more than the block's tests).
fn smallest(block: &[f32]) -> f32 {
    let mut lanes = [f32::INFINITY; 16];
    for chunk in block.chunks(16) {
        for (m, &c) in lanes.iter_mut().zip(chunk) {
            *m = if c < *m { c } else { *m };
        }
    }
    lanes.into_iter().fold(f32::INFINITY, f32::min)
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
        let f = Firing::new(t, vec![1.0; 256], &[]);
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
