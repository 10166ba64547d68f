//! Recovery of planted features by an SAE (docs/metrics.md, "Recovery of planted features"):
//! - MMCS = mean over ground-truth directions g of max_j cos(g, d_j) (d_j the decoder rows);
//! - MCC = mean |cos| over the pairs of the optimal one-to-one matching of latents to truths
//!   (Hungarian; SAELens's definition, [`super::metrics::matching`]);
//! - uniqueness = distinct truths that are some latent's best match, over the latents;
//! - recovered = fraction of g with max_j cos(g, d_j) ≥ threshold (0.9);
//! - per-feature best cosine against the planted frequency (by frequency decile);
//! - duplicated latents (pairs of live latents with cos ≥ threshold) and dead latents.

use serde::{Deserialize, Serialize};

use super::metrics::{matching, SampleReport};
use crate::kernels::dot;

/// File name of a verification: [`RecoveryReport`] (`verify --sae`) or
/// [`NeuronScore`](super::neurons::NeuronScore) (`verify --audit`).
pub const VERIFY_FILE: &str = "verify.json";
/// The recovery scatter `verify --sae` writes into the SAE's folder.
pub const VERIFY_PLOT_FILE: &str = "verify.svg";

/// One planted feature's best match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureMatch {
    pub feature: usize,
    pub frequency: f32,
    pub best_cos: f32,
    pub best_latent: usize,
    /// |cos| with the latent the one-to-one matching gave it (0 when unmatched: more truths
    /// than latents).
    pub matched_cos: f32,
    /// `usize::MAX` when unmatched.
    pub matched_latent: usize,
}

/// Recovery by frequency band.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrequencyBand {
    pub min_frequency: f32,
    pub max_frequency: f32,
    pub features: usize,
    pub mean_best_cos: f64,
    pub recovered: f64,
}

/// Planted features against an SAE's decoder: what `unravel verify --sae` writes to
/// [`VERIFY_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub n_truth: usize,
    pub d_sae: usize,
    pub d: usize,
    pub threshold: f32,
    pub mmcs: f64,
    /// SAELens's MCC: the mean |cos| of the min(n_truth, d_sae) matched pairs.
    pub mcc: f64,
    /// SAELens's uniqueness (absent in reports of older versions).
    #[serde(default)]
    pub uniqueness: f64,
    pub recovered: f64,
    pub dead_latents: usize,
    /// Pairs of live latents whose decoder directions have cos ≥ threshold.
    pub duplicated_pairs: usize,
    pub bands: Vec<FrequencyBand>,
    pub features: Vec<FeatureMatch>,
    /// The metrics measured on samples with true codes (when the dataset stores them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<SampleReport>,
}

/// Compares planted `truth [n, d]` (with `frequencies [n]`) to an SAE's `decoder [d_sae, d]`;
/// `alive[j]` says whether latent j ever fired (from its sparsity file; all true if unknown).
pub fn recovery(
    truth: &[f32],
    frequencies: &[f32],
    decoder: &[f32],
    alive: &[bool],
    d: usize,
    threshold: f32,
) -> RecoveryReport {
    use rayon::prelude::*;
    let (n, s) = (truth.len() / d, decoder.len() / d);
    // cos [s, n], latents by truths, as SAELens orders them.
    let cos = matching::cosines(decoder, truth, d);
    let best: Vec<(usize, f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            (0..s).fold((0, f32::MIN), |b, j| {
                let c = cos[j * n + i];
                if c > b.1 {
                    (j, c)
                } else {
                    b
                }
            })
        })
        .collect();
    let (mcc, pairs) = matching::mcc(&cos, s, n);
    let mut matched = vec![(usize::MAX, 0f32); n];
    for &(j, i) in &pairs {
        matched[i] = (j, cos[j * n + i].abs());
    }
    let features: Vec<FeatureMatch> = (0..n)
        .map(|i| FeatureMatch {
            feature: i,
            frequency: frequencies.get(i).copied().unwrap_or(f32::NAN),
            best_cos: best[i].1,
            best_latent: best[i].0,
            matched_cos: matched[i].1,
            matched_latent: matched[i].0,
        })
        .collect();
    let mmcs = features.iter().map(|f| f.best_cos as f64).sum::<f64>() / n.max(1) as f64;
    let recovered =
        features.iter().filter(|f| f.best_cos >= threshold).count() as f64 / n.max(1) as f64;
    let uniqueness = matching::uniqueness(&matching::best_features(&cos, s, n), n);
    let w = matching::unit_rows(decoder, d);
    let live: Vec<usize> = (0..s)
        .filter(|&j| alive.get(j).copied().unwrap_or(true))
        .collect();
    let duplicated_pairs = duplicated_pairs(&w, &live, d, threshold);
    let bands = frequency_bands(&features, threshold);
    RecoveryReport {
        n_truth: n,
        d_sae: s,
        d,
        threshold,
        mmcs,
        mcc,
        uniqueness,
        recovered,
        dead_latents: s - live.len(),
        duplicated_pairs,
        bands,
        features,
        samples: None,
    }
}

/// Pairs of live latents (rows of the unit decoder `w`) with cos ≥ threshold.
fn duplicated_pairs(w: &[f32], live: &[usize], d: usize, threshold: f32) -> usize {
    use rayon::prelude::*;
    live.par_iter()
        .enumerate()
        .map(|(a, &j)| {
            live[a + 1..]
                .iter()
                .filter(|&&k| dot(&w[j * d..(j + 1) * d], &w[k * d..(k + 1) * d]) >= threshold)
                .count()
        })
        .sum()
}

/// Recovery by deciles of planted frequency.
fn frequency_bands(features: &[FeatureMatch], threshold: f32) -> Vec<FrequencyBand> {
    let n = features.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| features[a].frequency.total_cmp(&features[b].frequency));
    order
        .chunks(n.div_ceil(10).max(1))
        .map(|c| FrequencyBand {
            min_frequency: features[c[0]].frequency,
            max_frequency: features[c[c.len() - 1]].frequency,
            features: c.len(),
            mean_best_cos: c.iter().map(|&i| features[i].best_cos as f64).sum::<f64>()
                / c.len() as f64,
            recovered: c
                .iter()
                .filter(|&&i| features[i].best_cos >= threshold)
                .count() as f64
                / c.len() as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_recovery_scores_one_and_matching_is_one_to_one() {
        // Truth = the 3 axes of R³; latents: the axes in another order, plus a duplicate of x.
        let truth = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let dec = [
            0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 1.0, 0.0, 0.0, 0.99, 0.141, 0.0,
        ];
        let r = recovery(&truth, &[0.1, 0.2, 0.3], &dec, &[true; 4], 3, 0.9);
        assert!((r.mmcs - 1.0).abs() < 1e-6 && (r.mcc - 1.0).abs() < 1e-6 && r.recovered == 1.0);
        assert_eq!(r.features[0].matched_latent, 2);
        assert_eq!(r.features[1].matched_latent, 0);
        assert_eq!(r.duplicated_pairs, 1);
        // Best matches: y, z, x, x — 3 distinct truths over 4 latents.
        assert!((r.uniqueness - 0.75).abs() < 1e-12);
        // Only one latent for two truths: the best cosine can be shared, the matching cannot.
        let dec = [1.0, 1.0, 0.0];
        let r = recovery(&truth[..6], &[0.1, 0.2], &dec, &[true], 3, 0.9);
        let c = std::f64::consts::FRAC_1_SQRT_2;
        assert!((r.mmcs - c).abs() < 1e-6, "{}", r.mmcs);
        // SAELens's MCC: the mean over the one matched pair.
        assert!((r.mcc - c).abs() < 1e-6, "{}", r.mcc);
        assert_eq!(r.features[1].matched_latent, usize::MAX);
        assert_eq!(r.recovered, 0.0);
    }
}
