//! The copula's cuts c_i = (t_i − Σ_k g_k F_ik) / s_i: feature i fires when its own noise
//! η_i exceeds c_i (t_i = Φ⁻¹(1 − p_i), g a row's shared Gaussian, F the low-rank factor,
//! s_i the noise scale). They are the generator's largest cost (n × rank a row), so:
//!
//! - a group's cuts are computed [`ROWS`] rows at a time: each column of F read serves them
//!   all. On AVX-512 a tile of [`ROWS`] rows × 32 features stays in registers through the whole
//!   sum over k (2.6× the portable loop, which reloads and stores the cuts for every k);
//! - F's columns are stored with a stride of n plus one cache line: n is a power of two in the
//!   presets, and a tile reads the same offset of all 25 columns (a precaution against cache-set
//!   conflicts; it measured no different with the portable loop);
//! - every path, and [`Cuts::one`] for a single feature, does the same operations in the same
//!   order (t, minus each g_k F_ik in k order as a multiply then a subtract, times 1/s): the
//!   same bits on every instruction set, so a row is the same on every machine.

use crate::kernels::simd::dispatch;

/// Rows whose cuts are computed together.
const ROWS: usize = 4;
/// Features per tile of the portable loop (a tile's cuts for [`ROWS`] rows stay in the
/// first-level cache).
const TILE: usize = 128;

/// Everything the cuts read; no state.
#[derive(Debug, Clone)]
pub struct Cuts {
    pub n: usize,
    pub rank: usize,
    /// Φ⁻¹(1 − p_i), f32 (as SAELens's thresholds).
    thresholds: Vec<f32>,
    /// 1 / s_i (1 without correlation).
    inv_noise_std: Vec<f32>,
    /// F[i, k] at `k · stride + i` (empty without correlation).
    columns: Vec<f32>,
    stride: usize,
    /// F[i, k] at `i · rank + k`: one feature's cut reads a contiguous row.
    rows: Vec<f32>,
}

impl Cuts {
    /// From the thresholds, 1 / s and F transposed (`[rank, n]`, empty without correlation).
    pub fn new(thresholds: Vec<f32>, inv_noise_std: Vec<f32>, factor_t: &[f32]) -> Cuts {
        let n = thresholds.len();
        let rank = factor_t.len() / n.max(1);
        let stride = n + 16;
        let mut columns = vec![0f32; rank * stride];
        for (to, from) in columns
            .chunks_exact_mut(stride)
            .zip(factor_t.chunks_exact(n.max(1)))
        {
            to[..n].copy_from_slice(from);
        }
        let rows = (0..n * rank)
            .map(|j| factor_t[(j % rank) * n + j / rank])
            .collect();
        Cuts {
            n,
            rank,
            thresholds,
            inv_noise_std,
            columns,
            stride,
            rows,
        }
    }

    /// Feature `f`'s cut for a row whose shared Gaussian is `g`.
    #[inline]
    pub fn one(&self, g: &[f32], f: usize) -> f32 {
        let mut c = self.thresholds[f];
        for (&gk, &x) in g.iter().zip(&self.rows[f * self.rank..(f + 1) * self.rank]) {
            c -= gk * x;
        }
        c * self.inv_noise_std[f]
    }

    /// The cuts of features `lo .. lo + len` for every row `r` (shared Gaussian `g[r]`, of
    /// length `rank`) into `cut[r·len ..]`, where `len = cut.len() / g.len()`.
    pub fn many(&self, g: &[Vec<f32>], lo: usize, cut: &mut [f32]) {
        assert!(
            g.iter().all(|g| g.len() == self.rank),
            "g has the factor's rank"
        );
        assert!(
            lo + cut.len() / g.len().max(1) <= self.n,
            "features within 0..n"
        );
        if cut.is_empty() {
            return;
        }
        dispatch!(many_avx512, many_avx2, many_body, (self, g, lo, cut))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn many_avx512(c: &Cuts, g: &[Vec<f32>], lo: usize, cut: &mut [f32]) {
    let len = cut.len() / g.len().max(1);
    let full = g.len() / ROWS * ROWS;
    let (head, rest) = cut.split_at_mut(full * len);
    for (gs, out) in g.chunks_exact(ROWS).zip(head.chunks_exact_mut(ROWS * len)) {
        // SAFETY: AVX-512F was detected (this function's target feature); `many` checked that
        // every g has `rank` entries and that features lo .. lo + len exist.
        unsafe { registers::tile_rows(c, gs, lo, len, out) };
    }
    many_body(c, &g[full..], lo, rest)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn many_avx2(c: &Cuts, g: &[Vec<f32>], lo: usize, cut: &mut [f32]) {
    many_body(c, g, lo, cut)
}

/// The portable loop: tiles of [`ROWS`] rows × [`TILE`] features, the factor's column for a
/// tile read once for all its rows.
#[inline(always)]
fn many_body(c: &Cuts, g: &[Vec<f32>], lo: usize, cut: &mut [f32]) {
    let len = cut.len() / g.len().max(1);
    for (gs, out) in g.chunks(ROWS).zip(cut.chunks_mut(ROWS * len.max(1))) {
        for j in (0..len).step_by(TILE) {
            let (at, w) = (lo + j, TILE.min(len - j));
            for r in 0..gs.len() {
                out[r * len + j..][..w].copy_from_slice(&c.thresholds[at..at + w]);
            }
            for k in 0..c.rank {
                let col = &c.columns[k * c.stride + at..][..w];
                for (r, gr) in gs.iter().enumerate() {
                    let gk = gr[k];
                    for (v, &x) in out[r * len + j..][..w].iter_mut().zip(col) {
                        *v -= gk * x;
                    }
                }
            }
            let s = &c.inv_noise_std[at..at + w];
            for r in 0..gs.len() {
                for (v, &s) in out[r * len + j..][..w].iter_mut().zip(s) {
                    *v *= s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod registers {
    use super::{Cuts, ROWS};
    use std::arch::x86_64::*;

    /// Lanes `0..n` of 16 set.
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    /// 32 values from `p`, the lanes outside `m0`, `m1` not read (zero).
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32, m0: __mmask16, m1: __mmask16) -> (__m512, __m512) {
        (
            _mm512_maskz_loadu_ps(m0, p),
            _mm512_maskz_loadu_ps(m1, p.add(16)),
        )
    }

    /// [`ROWS`] rows' cuts of features `lo .. lo + len` into `out` (`[ROWS, len]`), 32
    /// features at a time held in registers (masked at the end).
    ///
    /// # Safety
    /// AVX-512F must be available; `g` has [`ROWS`] entries of `c.rank` values, features
    /// `lo .. lo + len` exist and `out.len() == ROWS · len`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_rows(c: &Cuts, g: &[Vec<f32>], lo: usize, len: usize, out: &mut [f32]) {
        debug_assert!(g.len() == ROWS && out.len() == ROWS * len);
        let mut j = 0;
        while j < len {
            let (m0, m1) = (lanes(len - j), lanes((len - j).saturating_sub(16)));
            let at = lo + j;
            let (t0, t1) = load(c.thresholds.as_ptr().add(at), m0, m1);
            let mut acc = [[t0, t1]; ROWS];
            for k in 0..c.rank {
                let (x0, x1) = load(c.columns.as_ptr().add(k * c.stride + at), m0, m1);
                for (a, gr) in acc.iter_mut().zip(g) {
                    let gk = _mm512_set1_ps(*gr.get_unchecked(k));
                    a[0] = _mm512_sub_ps(a[0], _mm512_mul_ps(gk, x0));
                    a[1] = _mm512_sub_ps(a[1], _mm512_mul_ps(gk, x1));
                }
            }
            let (s0, s1) = load(c.inv_noise_std.as_ptr().add(at), m0, m1);
            for (r, a) in acc.iter().enumerate() {
                let o = out.as_mut_ptr().add(r * len + j);
                _mm512_mask_storeu_ps(o, m0, _mm512_mul_ps(a[0], s0));
                _mm512_mask_storeu_ps(o.add(16), m1, _mm512_mul_ps(a[1], s1));
            }
            j += 32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every path gives the bits of [`Cuts::one`], for row and feature counts that are not
    /// multiples of the tiles.
    #[test]
    fn every_path_gives_the_single_features_bits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (n, rank) = (300, 5);
        let thresholds: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..3.0)).collect();
        let inv: Vec<f32> = (0..n).map(|_| rng.random_range(1.0..1.3)).collect();
        let factor_t: Vec<f32> = (0..n * rank).map(|_| rng.random_range(-0.3..0.3)).collect();
        let cuts = Cuts::new(thresholds, inv, &factor_t);
        for rows in [1, 3, 4, 7, 16] {
            let g: Vec<Vec<f32>> = (0..rows)
                .map(|_| (0..rank).map(|_| rng.random_range(-2.0..2.0)).collect())
                .collect();
            for (lo, len) in [(0, 300), (17, 45), (256, 44), (5, 32)] {
                let mut fast = vec![0f32; rows * len];
                cuts.many(&g, lo, &mut fast);
                let mut portable = vec![0f32; rows * len];
                many_body(&cuts, &g, lo, &mut portable);
                for r in 0..rows {
                    for i in 0..len {
                        let one = cuts.one(&g[r], lo + i);
                        assert_eq!(
                            fast[r * len + i].to_bits(),
                            one.to_bits(),
                            "{rows} {lo} {i}"
                        );
                        assert_eq!(portable[r * len + i].to_bits(), one.to_bits());
                    }
                }
            }
        }
        // No features (a spec without roots asks for none) and no rows.
        let g = vec![vec![0.5f32; rank]; 4];
        cuts.many(&g, 300, &mut []);
        cuts.many(&[], 0, &mut []);
    }
}
