//! Low-rank correlation of firing, as SAELens's `generate_random_low_rank_correlation_matrix`:
//! a factor F `[n, rank]` of N(0, scale²) entries (a row whose squared norm would leave less than
//! 0.01 of variance is shrunk to leave exactly 0.01) and the diagonal 1 − |F_i|², so the implied
//! correlation F Fᵀ + diag has a unit diagonal. A row's Gaussian is z = F g + √diag ⊙ η.

use rand_distr::{Distribution, StandardNormal};

use super::normal::RowRng;
use super::spec::BenchSpec;

/// Least variance left to a feature's own noise.
const MIN_DIAG: f32 = 0.01;

/// The factor (stored transposed, `[rank, n]`, so a row's shared part is `rank` axpys) and
/// 1/√diag.
#[derive(Debug, Clone)]
pub struct LowRank {
    pub rank: usize,
    /// `factor_t[k * n + i]` = F[i, k].
    pub factor_t: Vec<f32>,
    /// 1 / √(1 − |F_i|²).
    pub inv_noise_std: Vec<f32>,
}

impl LowRank {
    pub fn build(spec: &BenchSpec, rng: &mut RowRng) -> LowRank {
        let (n, rank) = (spec.features, spec.correlation_rank);
        let scale = spec.correlation_scale as f32;
        let mut f: Vec<f32> = (0..n * rank)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut *rng);
                scale * z
            })
            .collect();
        let mut inv_noise_std = Vec::with_capacity(n);
        for row in f.chunks_mut(rank) {
            let sq: f32 = row.iter().map(|v| v * v).sum();
            if 1.0 - sq < MIN_DIAG {
                let s = ((1.0 - MIN_DIAG) / sq).sqrt();
                row.iter_mut().for_each(|v| *v *= s);
            }
            let sq: f32 = row.iter().map(|v| v * v).sum();
            inv_noise_std.push(1.0 / (1.0 - sq).max(MIN_DIAG * 0.5).sqrt());
        }
        let mut factor_t = vec![0f32; n * rank];
        for i in 0..n {
            for k in 0..rank {
                factor_t[k * n + i] = f[i * rank + k];
            }
        }
        LowRank {
            rank,
            factor_t,
            inv_noise_std,
        }
    }

    /// A row's shared part F g `[n]`, drawing g ~ N(0, I_rank) from `rng`.
    pub fn shared(&self, rng: &mut RowRng) -> Vec<f32> {
        let n = self.inv_noise_std.len();
        let mut m = vec![0f32; n];
        for k in 0..self.rank {
            let g: f32 = StandardNormal.sample(&mut *rng);
            crate::kernels::axpy(g, &self.factor_t[k * n..(k + 1) * n], &mut m);
        }
        m
    }
}
