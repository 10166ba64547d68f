//! Superposition metrics of one hook, streamed over the shards (memory: d × d, whatever the number
//! of tokens). Definitions (docs/metrics.md, "Superposition metrics"):
//! - effective dimensionality = participation ratio (Σλ)² / Σλ² of the covariance eigenvalues λ;
//! - effective rank = number of largest eigenvalues (σ² of the centred data) needed for
//!   `rank_threshold` (0.99) of Σλ;
//! - sparsity = fraction of values with |a| < ε;
//! - interference = mean |off-diagonal| of the correlation matrix (dimensions with zero variance
//!   are left out);
//! - PCA to 2D: a sample of rows projected on the top two eigenvectors.

use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Rows accumulated per GEMM.
const CHUNK: usize = 1024;

/// Streaming sums of one hook.
pub struct CovarianceAcc {
    d: usize,
    n: u64,
    sum: Vec<f64>,
    /// Σ x xᵀ, `[d, d]`.
    gram: Vec<f64>,
    small: u64,
    epsilon: f32,
    buf: Vec<f32>,
    /// First rows kept for the PCA scatter.
    sample: Vec<f32>,
    sample_rows: usize,
}

impl CovarianceAcc {
    pub fn new(d: usize, epsilon: f32, sample_rows: usize) -> CovarianceAcc {
        CovarianceAcc {
            d,
            n: 0,
            sum: vec![0.0; d],
            gram: vec![0.0; d * d],
            small: 0,
            epsilon,
            buf: Vec::with_capacity(CHUNK * d),
            sample: vec![],
            sample_rows,
        }
    }

    /// Adds rows `x [rows, d]`.
    pub fn add(&mut self, x: &[f32]) {
        let d = self.d;
        for row in x.chunks(d) {
            if self.sample.len() < self.sample_rows * d {
                self.sample.extend_from_slice(row);
            }
            self.buf.extend_from_slice(row);
            if self.buf.len() == CHUNK * d {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        let d = self.d;
        let rows = self.buf.len() / d;
        if rows == 0 {
            return;
        }
        // The chunk's Gram matrix in f32 (one GEMM), added into the f64 total: the rounding of
        // one chunk of 1 024 rows stays far below the metrics' precision.
        let mut g = vec![0f32; d * d];
        crate::kernels::matmul(
            (d, d, rows),
            &mut g,
            false,
            &self.buf,
            (1, d),
            &self.buf,
            (d, 1),
        );
        self.gram
            .par_iter_mut()
            .zip(&g)
            .for_each(|(a, &b)| *a += b as f64);
        for row in self.buf.chunks(d) {
            for (s, &v) in self.sum.iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        self.small += self.buf.iter().filter(|v| v.abs() < self.epsilon).count() as u64;
        self.n += rows as u64;
        self.buf.clear();
    }

    /// The metrics. `rank_threshold` in (0, 1]; `interference_k` = size of the correlation
    /// block kept for the heatmap.
    pub fn finish(mut self, rank_threshold: f64, interference_k: usize) -> HookMetrics {
        self.flush();
        let (d, n) = (self.d, self.n.max(1) as f64);
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let cov = DMatrix::from_fn(d, d, |i, j| self.gram[i * d + j] / n - mean[i] * mean[j]);
        let std: Vec<f64> = (0..d).map(|i| cov[(i, i)].max(0.0).sqrt()).collect();
        let eig = SymmetricEigen::new(cov.clone());
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let eigenvalues: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
        let total: f64 = eigenvalues.iter().sum();
        let sq: f64 = eigenvalues.iter().map(|l| l * l).sum();
        let effective_dimensionality = if sq > 0.0 { total * total / sq } else { 0.0 };
        let mut acc = 0.0;
        let mut effective_rank = 0;
        for &l in &eigenvalues {
            if total <= 0.0 || acc >= rank_threshold * total {
                break;
            }
            acc += l;
            effective_rank += 1;
        }
        // Mean |correlation| over pairs of dimensions that vary.
        let live: Vec<usize> = (0..d).filter(|&i| std[i] > 1e-12).collect();
        let corr = |i: usize, j: usize| cov[(i, j)] / (std[i] * std[j]);
        let (mut s, mut pairs) = (0.0, 0u64);
        for (a, &i) in live.iter().enumerate() {
            for &j in &live[a + 1..] {
                s += corr(i, j).abs();
                pairs += 1;
            }
        }
        let k = interference_k.min(d);
        let correlation_block: Vec<Vec<f32>> = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| {
                        if std[i] > 1e-12 && std[j] > 1e-12 {
                            corr(i, j) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let pc: Vec<Vec<f64>> = order
            .iter()
            .take(2)
            .map(|&c| (0..d).map(|r| eig.eigenvectors[(r, c)]).collect())
            .collect();
        let pca_2d: Vec<[f32; 2]> = self
            .sample
            .chunks(d)
            .map(|row| {
                let proj = |v: &[f64]| -> f32 {
                    row.iter()
                        .zip(v)
                        .zip(&mean)
                        .map(|((&x, &w), &m)| (x as f64 - m) * w)
                        .sum::<f64>() as f32
                };
                [
                    pc.first().map_or(0.0, |v| proj(v)),
                    pc.get(1).map_or(0.0, |v| proj(v)),
                ]
            })
            .collect();
        HookMetrics {
            d,
            tokens: self.n,
            effective_dimensionality,
            effective_rank,
            rank_threshold,
            rank_ratio: effective_rank as f64 / d as f64,
            sparsity: self.small as f64 / (self.n.max(1) as f64 * d as f64),
            epsilon: self.epsilon,
            interference: if pairs > 0 { s / pairs as f64 } else { 0.0 },
            eigenvalues,
            correlation_block,
            pca_2d,
        }
    }
}

/// The superposition metrics of one hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookMetrics {
    pub d: usize,
    pub tokens: u64,
    pub effective_dimensionality: f64,
    pub effective_rank: usize,
    pub rank_threshold: f64,
    /// effective_rank / d.
    pub rank_ratio: f64,
    pub sparsity: f64,
    pub epsilon: f32,
    pub interference: f64,
    /// Covariance eigenvalues, largest first (σ² of the centred data / tokens).
    pub eigenvalues: Vec<f64>,
    /// Correlation matrix of the first k dimensions.
    pub correlation_block: Vec<Vec<f32>>,
    /// The first sampled rows projected on the top two principal components.
    pub pca_2d: Vec<[f32; 2]>,
}

/// Singular values of a weight matrix `[rows, cols]` (largest first), and its effective rank.
pub fn weight_spectrum(
    w: &[f32],
    rows: usize,
    cols: usize,
    rank_threshold: f64,
) -> (Vec<f64>, usize) {
    let m = DMatrix::from_fn(rows, cols, |i, j| w[i * cols + j] as f64);
    let mut sv: Vec<f64> = m.singular_values().iter().copied().collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = sv.iter().map(|s| s * s).sum();
    let mut acc = 0.0;
    let mut rank = 0;
    for s in &sv {
        if total <= 0.0 || acc >= rank_threshold * total {
            break;
        }
        acc += s * s;
        rank += 1;
    }
    (sv, rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// Known answers: isotropic Gaussian data has participation ratio ≈ d (Marchenko–Pastur:
    /// E[PR] = d·N/(N + d + 1) for the sample covariance), data on k equal-variance directions
    /// has PR = k and effective rank k exactly, independent dimensions have interference ≈
    /// √(2/(πN)) (mean |r| of uncorrelated samples).
    #[test]
    fn metrics_match_analytic_answers() {
        let (d, n) = (32, 20_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut acc = CovarianceAcc::new(d, 1e-6, 100);
        let x: Vec<f32> = (0..n * d)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        acc.add(&x);
        let m = acc.finish(0.99, 8);
        let expected = d as f64 * n as f64 / (n + d + 1) as f64;
        assert!(
            (m.effective_dimensionality - expected).abs() < 0.3,
            "{}",
            m.effective_dimensionality
        );
        assert!(m.effective_rank >= 31, "{}", m.effective_rank);
        let iid = (2.0 / (std::f64::consts::PI * n as f64)).sqrt();
        assert!(
            (m.interference - iid).abs() < 0.1 * iid,
            "{} vs {iid}",
            m.interference
        );
        assert!(m.sparsity < 1e-5); // P(|z| < 1e-6) ≈ 8e-7
        assert_eq!(m.pca_2d.len(), 100);

        // Rank 4: x = Σ_k z_k u_k over 4 orthonormal (coordinate) directions with equal variance,
        // half of the values exactly 0.
        let k = 4;
        let mut acc = CovarianceAcc::new(d, 1e-6, 0);
        let mut x = vec![0f32; n * d];
        for row in x.chunks_mut(d) {
            for v in row.iter_mut().take(k) {
                *v = rng.sample::<f32, _>(StandardNormal);
            }
        }
        acc.add(&x);
        let m = acc.finish(0.99, 8);
        assert!(
            (m.effective_dimensionality - k as f64).abs() < 0.05,
            "{}",
            m.effective_dimensionality
        );
        assert_eq!(m.effective_rank, k);
        assert!((m.sparsity - (d - k) as f64 / d as f64).abs() < 1e-5);
        assert!(m.eigenvalues[k] < 1e-6 && (m.eigenvalues[0] - 1.0).abs() < 0.05);
    }

    fn transpose(w: &[f32], r: usize, c: usize) -> Vec<f32> {
        (0..c * r).map(|i| w[(i % r) * c + i / r]).collect()
    }

    #[test]
    fn weight_spectrum_of_a_rank_two_matrix() {
        // w = 3·e1 f1ᵀ + 1·e2 f2ᵀ: singular values 3, 1, 0 ...; 99% of Σσ² needs both.
        let (r, c) = (5, 4);
        let mut w = vec![0f32; r * c];
        w[0] = 3.0;
        w[c + 1] = 1.0;
        let (sv, rank) = weight_spectrum(&w, r, c, 0.99);
        assert!(
            (sv[0] - 3.0).abs() < 1e-6 && (sv[1] - 1.0).abs() < 1e-6 && sv[2].abs() < 1e-6,
            "{sv:?}"
        );
        let (wide, _) = weight_spectrum(&transpose(&w, r, c), c, r, 0.99);
        assert!((wide[0] - 3.0).abs() < 1e-6 && (wide[1] - 1.0).abs() < 1e-6);
        assert_eq!(rank, 2);
        let (_, rank) = weight_spectrum(&w, r, c, 0.8);
        assert_eq!(rank, 1);
    }
}
