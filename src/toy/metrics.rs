//! Per-instance geometry of a trained toy model (docs/metrics.md, "Toy models"):
//! feature norms ‖W_i‖, feature dimensionality D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², dimensions per
//! feature d / ‖W‖_F², interference Σ_{j≠i} (Ŵ_i·W_j)², WᵀW, and the angle of each feature in 2D;
//! plus the loss of given weights (exact for the two-orthogonal-features solution, Monte Carlo in
//! general) and Spearman's rank correlation.

use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;

use super::data::sample_batch;

/// A column norm below this is a feature the model does not represent (D_i = interference = 0).
const ZERO_NORM: f64 = 1e-6;

#[derive(Debug, Clone, Serialize)]
pub struct Geometry {
    pub norms: Vec<f64>,
    pub dimensionality: Vec<f64>,
    pub dims_per_feature: f64,
    pub interference: Vec<f64>,
    /// WᵀW [n, n].
    pub wtw: Vec<Vec<f64>>,
    /// d = 2 only: each feature's direction in degrees, in [0, 360).
    pub angles: Option<Vec<f64>>,
}

/// The geometry of W [d, n] (row-major).
pub fn geometry(w: &[f32], d: usize, n: usize) -> Geometry {
    let col = |i: usize| (0..d).map(move |r| w[r * n + i] as f64);
    let wtw: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| col(i).zip(col(j)).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect();
    let norms: Vec<f64> = (0..n).map(|i| wtw[i][i].sqrt()).collect();
    // (Ŵ_i·W_j)² = (W_i·W_j)² / ‖W_i‖².
    let projected = |i: usize, skip_self: bool| -> f64 {
        (0..n)
            .filter(|&j| !(skip_self && j == i))
            .map(|j| wtw[i][j] * wtw[i][j])
            .sum::<f64>()
            / wtw[i][i]
    };
    let represented = |i: usize| norms[i] > ZERO_NORM;
    let dimensionality = (0..n)
        .map(|i| {
            if represented(i) {
                wtw[i][i] / projected(i, false)
            } else {
                0.0
            }
        })
        .collect();
    let interference = (0..n)
        .map(|i| {
            if represented(i) {
                projected(i, true)
            } else {
                0.0
            }
        })
        .collect();
    let frob: f64 = (0..n).map(|i| wtw[i][i]).sum();
    let angles = (d == 2).then(|| {
        (0..n)
            .map(|i| {
                (w[n + i] as f64)
                    .atan2(w[i] as f64)
                    .to_degrees()
                    .rem_euclid(360.0)
            })
            .collect()
    });
    Geometry {
        norms,
        dimensionality,
        dims_per_feature: if frob > 0.0 {
            d as f64 / frob
        } else {
            f64::INFINITY
        },
        interference,
        wtw,
        angles,
    }
}

/// Gaps between consecutive angles around the circle (sorted; they sum to 360°).
pub fn angle_gaps(angles: &[f64]) -> Vec<f64> {
    let mut a = angles.to_vec();
    a.sort_by(f64::total_cmp);
    (0..a.len())
        .map(|k| {
            if k + 1 < a.len() {
                a[k + 1] - a[k]
            } else {
                a[0] + 360.0 - a[k]
            }
        })
        .collect()
}

/// Expected loss of the solution that stores `kept` features exactly on orthonormal axes and
/// drops the rest, each dropped feature predicted by its optimal constant b_i = E[x_i] = p/2:
/// Σ_{dropped} I_i Var(x_i) = Σ I_i (p/3 − p²/4), with E[x²] = p/3 for Bernoulli(p)·U(0,1).
pub fn orthogonal_solution_loss(density: f64, importance: &[f64], kept: &[usize]) -> f64 {
    let var = density / 3.0 - density * density / 4.0;
    importance
        .iter()
        .enumerate()
        .filter(|(i, _)| !kept.contains(i))
        .map(|(_, imp)| imp * var)
        .sum()
}

/// The W [d, n] and b of the two-orthogonal-features solution keeping `kept` (≤ d of them).
pub fn orthogonal_solution(
    n: usize,
    d: usize,
    density: f64,
    kept: &[usize],
) -> (Vec<f32>, Vec<f32>) {
    let mut w = vec![0f32; d * n];
    let mut b = vec![(density / 2.0) as f32; n];
    for (axis, &i) in kept.iter().enumerate().take(d) {
        w[axis * n + i] = 1.0;
        b[i] = 0.0;
    }
    (w, b)
}

/// One instance's parameters: W [d, n] row-major and b [n].
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub d: usize,
    /// x̂ without the ReLU.
    pub linear: bool,
}

/// Monte Carlo estimate of the expected loss of `m` at `density`, from `samples` draws.
pub fn monte_carlo_loss(
    m: Weights,
    density: f64,
    importance: &[f64],
    samples: usize,
    seed: u64,
) -> f64 {
    let Weights { w, b, d, linear } = m;
    let n = b.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    let chunk = 65536;
    let (mut total, mut done) = (0f64, 0usize);
    let mut x = Vec::new();
    let mut h = vec![0f64; d];
    while done < samples {
        let rows = chunk.min(samples - done);
        sample_batch(&mut rng, &[density], rows, n, &mut x);
        for row in x.chunks_exact(n) {
            for (r, hr) in h.iter_mut().enumerate() {
                *hr = (0..n).map(|i| w[r * n + i] as f64 * row[i] as f64).sum();
            }
            for i in 0..n {
                let pre = b[i] as f64 + (0..d).map(|r| w[r * n + i] as f64 * h[r]).sum::<f64>();
                let out = if linear { pre } else { pre.max(0.0) };
                let e = row[i] as f64 - out;
                total += importance[i] * e * e;
            }
        }
        done += rows;
    }
    total / samples as f64
}

/// Spearman's rank correlation (ties get their mean rank); NaN when either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&ra), mean(&rb));
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut k = 0;
    while k < idx.len() {
        let mut e = k;
        while e + 1 < idx.len() && v[idx[e + 1]] == v[idx[k]] {
            e += 1;
        }
        for &i in &idx[k..=e] {
            r[i] = (k + e) as f64 / 2.0;
        }
        k = e + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_pentagon_has_d_0_4_and_72_degree_gaps() {
        let n = 5;
        let mut w = vec![0f32; 2 * n];
        for i in 0..n {
            let t = (i as f64 * 72.0 + 10.0).to_radians();
            w[i] = (1.13 * t.cos()) as f32;
            w[n + i] = (1.13 * t.sin()) as f32;
        }
        let g = geometry(&w, 2, n);
        for i in 0..n {
            assert!((g.norms[i] - 1.13).abs() < 1e-5);
            assert!((g.dimensionality[i] - 0.4).abs() < 1e-5);
            // Σ_{j≠i} cos²(72k)·1.13² = (2.5 − 1)·1.13²
            assert!((g.interference[i] - 1.5 * 1.13f64.powi(2)).abs() < 1e-4);
        }
        for gap in angle_gaps(g.angles.as_ref().unwrap()) {
            assert!((gap - 72.0).abs() < 1e-3);
        }
        assert!((g.dims_per_feature - 2.0 / (5.0 * 1.13f64.powi(2))).abs() < 1e-5);
    }

    #[test]
    fn orthogonal_and_zero_features() {
        // Features 0 and 1 on the axes, 2 zero.
        let w = [1f32, 0.0, 0.0, 0.0, 2.0, 0.0];
        let g = geometry(&w, 2, 3);
        assert_eq!(g.dimensionality, vec![1.0, 1.0, 0.0]);
        assert_eq!(g.interference, vec![0.0, 0.0, 0.0]);
        assert_eq!(g.norms, vec![1.0, 2.0, 0.0]);
    }

    #[test]
    fn exact_orthogonal_loss_matches_monte_carlo() {
        let imp = vec![1.0; 5];
        let exact = orthogonal_solution_loss(0.99, &imp, &[0, 1]);
        let (w, b) = orthogonal_solution(5, 2, 0.99, &[0, 1]);
        let m = Weights {
            w: &w,
            b: &b,
            d: 2,
            linear: false,
        };
        let mc = monte_carlo_loss(m, 0.99, &imp, 200_000, 3);
        assert!((exact - mc).abs() < 0.003, "{exact} vs {mc}");
    }

    #[test]
    fn spearman_ranks() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 1.0, 0.0]) + 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 1.0, 2.0, 3.0]) - 0.9487).abs() < 1e-3);
    }
}
