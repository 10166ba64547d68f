//! Metrics of the decoder alone against the true feature directions, as SAELens computes them
//! (`sae_lens/synthetic/evals.py`: `mean_correlation_coefficient`, `feature_uniqueness`, and the
//! best match of `ClassificationMetricsCalculator`): every comparison is |cos| between an SAE
//! decoder row W_dec[j] and a true direction g_f, both normalised to unit length
//! (`sae_lens/util.py`: `cosine_similarities`).

use crate::kernels::dot;

/// Rows of `m [rows, d]` scaled to unit length; a zero row stays zero (its cosines are 0).
pub fn unit_rows(m: &[f32], d: usize) -> Vec<f32> {
    let mut out = m.to_vec();
    for r in out.chunks_mut(d) {
        let n = dot(r, r).sqrt().max(1e-8);
        r.iter_mut().for_each(|v| *v /= n);
    }
    out
}

/// cos of every latent with every true feature: `[d_sae, n_features]` row-major (the metrics
/// below take its absolute value, as SAELens does).
pub fn cosines(decoder: &[f32], truth: &[f32], d: usize) -> Vec<f32> {
    let (w, g) = (unit_rows(decoder, d), unit_rows(truth, d));
    let (s, n) = (w.len() / d, g.len() / d);
    let mut out = vec![0f32; s * n];
    // out[j, f] = Σ_k w[j, k] · g[f, k]: one GEMM.
    crate::kernels::matmul((s, n, d), &mut out, false, &w, (d, 1), &g, (1, d));
    out
}

/// MCC: the one-to-one matching of latents to true features maximising Σ|cos| (SAELens: SciPy's
/// `linear_sum_assignment` on the cost 1 − |cos|, computed in f32), and the mean |cos| of its
/// min(d_sae, n) pairs. Returns the MCC and the pairs `(latent, feature)`.
pub fn mcc(cos: &[f32], d_sae: usize, n: usize) -> (f64, Vec<(usize, usize)>) {
    let pairs = super::hungarian::linear_sum_assignment(d_sae, n, |j, f| {
        (1.0f32 - cos[j * n + f].abs()) as f64
    });
    let sum: f64 = pairs
        .iter()
        .map(|&(j, f)| cos[j * n + f].abs() as f64)
        .sum();
    (sum / pairs.len().max(1) as f64, pairs)
}

/// Each latent's best-matching true feature (the first of equal maxima, as `argmax`) and its
/// |cos|.
pub fn best_features(cos: &[f32], d_sae: usize, n: usize) -> Vec<(usize, f32)> {
    (0..d_sae)
        .map(|j| {
            cos[j * n..(j + 1) * n]
                .iter()
                .map(|c| c.abs())
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (f, c)| if c > b.1 { (f, c) } else { b },
                )
        })
        .collect()
}

/// Uniqueness: the number of distinct true features that are some latent's best match, over
/// d_sae (1 = every latent tracks its own feature; 0 without latents).
pub fn uniqueness(best: &[(usize, f32)], n: usize) -> f64 {
    if best.is_empty() {
        return 0.0;
    }
    let mut hit = vec![false; n];
    best.iter().for_each(|&(f, _)| hit[f] = true);
    hit.iter().filter(|&&h| h).count() as f64 / best.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcc_and_uniqueness_on_known_cases() {
        // Truth: the 3 axes of R³. Latents: z, x (scaled), a duplicate of x, and (1,1,0)/√2.
        let truth = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let dec = [0.0, 0.0, 3.0, 2.0, 0.0, 0.0, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let c = cosines(&dec, &truth, 3);
        let (m, pairs) = mcc(&c, 4, 3);
        // z→z (1), x→x (1, first of the two x latents or the other), (1,1,0)→y (1/√2).
        let want = (2.0 + std::f64::consts::FRAC_1_SQRT_2) / 3.0;
        assert!((m - want).abs() < 1e-6, "{m}");
        assert_eq!(pairs.len(), 3);
        let best = best_features(&c, 4, 3);
        assert_eq!(
            best.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![2, 0, 0, 0]
        );
        // Best matches {z, x}: 2 distinct features over 4 latents.
        assert!((uniqueness(&best, 3) - 0.5).abs() < 1e-12);
        // More features than latents: the mean runs over the d_sae matched pairs.
        let (m, pairs) = mcc(&cosines(&dec[..3], &truth, 3), 1, 3);
        assert_eq!((m, pairs), (1.0, vec![(0, 2)]));
        // A zero decoder row matches nothing (cos 0), without NaN.
        let (m, _) = mcc(&cosines(&[0.0; 3], &truth, 3), 1, 3);
        assert_eq!(m, 0.0);
    }
}
