//! The metrics measured on samples with known true codes, accumulated over batches as SAELens's
//! `eval_sae_on_synthetic_data` does (`sae_lens/synthetic/evals.py`: `L0Calculator`,
//! `DeadLatentsCalculator`, `ShrinkageCalculator`, `ExplainedVarianceCalculator`,
//! `ClassificationMetricsCalculator`):
//! - true L0 and SAE L0: mean count of activations > 0 per sample;
//! - dead latents: latents > 0 on no sample;
//! - shrinkage: mean over samples with ‖x‖ > 1e-6 of ‖x̂‖ / ‖x‖;
//! - EV: 1 − (Σ‖x − x̂‖²/N) / (E‖x‖² − ‖E x‖²) (1 if the inputs are constant and reconstructed
//!   exactly, 0 if constant and not);
//! - precision, recall, F1, accuracy of each latent against its best-matching true feature
//!   ([`super::f1`]).
//!
//! Batches come from any source of (inputs, true codes): a planted dataset's rows with their
//! stored codes ([`super::planted_samples`]) or a generator.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::f1::{mean_scores, Counts, Scores};
use crate::kernels::dot;
use crate::sae::metrics::FvuAccumulator;
use crate::sae::Sae;

/// A batch of samples: raw inputs and their true feature activations, sparse by row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleBatch {
    /// `[rows, d]` row-major: what the SAE reads.
    pub x: Vec<f32>,
    /// Row r's true activations are `features[offsets[r]..offsets[r + 1]]` with `values` beside
    /// them; `offsets` has rows + 1 entries.
    pub offsets: Vec<usize>,
    pub features: Vec<u32>,
    pub values: Vec<f32>,
}

impl SampleBatch {
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
}

/// One latent against its best-matching true feature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatentScore {
    pub latent: usize,
    pub feature: usize,
    /// |cos| of its decoder row with the feature's direction.
    pub abs_cos: f32,
    /// Samples it fired on.
    pub fired: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// What the samples say: SAELens's `SyntheticDataEvalResult` less the decoder-only MCC and
/// uniqueness (in the recovery report beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleReport {
    pub samples: u64,
    pub true_l0: f64,
    pub l0: f64,
    pub dead_latents: usize,
    pub shrinkage: f64,
    pub explained_variance: f64,
    /// Means over all latents.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
    pub latents: Vec<LatentScore>,
}

/// The running sums of [`SampleReport`].
pub struct SampleMetrics<'a> {
    sae: &'a Sae,
    n_features: usize,
    /// Each latent's best-matching feature and |cos|.
    best: Vec<(usize, f32)>,
    samples: u64,
    true_active: u64,
    /// Per latent: samples fired, and fired together with its feature.
    fired: Vec<u64>,
    tp: Vec<u64>,
    /// Per true feature: samples it fired on.
    feature_fired: Vec<u64>,
    shrinkage_sum: f64,
    shrinkage_rows: u64,
    ev: FvuAccumulator,
}

impl<'a> SampleMetrics<'a> {
    /// `best` from [`super::matching::best_features`] for this SAE and `n_features` true ones.
    pub fn new(sae: &'a Sae, best: Vec<(usize, f32)>, n_features: usize) -> Self {
        let s = sae.d_sae;
        SampleMetrics {
            sae,
            n_features,
            best,
            samples: 0,
            true_active: 0,
            fired: vec![0; s],
            tp: vec![0; s],
            feature_fired: vec![0; n_features],
            shrinkage_sum: 0.0,
            shrinkage_rows: 0,
            ev: FvuAccumulator::default(),
        }
    }

    /// Adds one batch.
    pub fn add(&mut self, b: &SampleBatch) {
        let (d, s, rows) = (self.sae.d_in, self.sae.d_sae, b.rows());
        if rows == 0 {
            return;
        }
        // Which true features fire on each row: a bit set per row.
        let words = self.n_features.div_ceil(64);
        let mut on = vec![0u64; rows * words];
        for r in 0..rows {
            for k in b.offsets[r]..b.offsets[r + 1] {
                if b.values[k] > 0.0 {
                    let f = b.features[k] as usize;
                    on[r * words + f / 64] |= 1 << (f % 64);
                    self.feature_fired[f] += 1;
                    self.true_active += 1;
                }
            }
        }
        let acts = self.sae.encode_feature_major(&b.x); // [s, rows]
        let best = &self.best;
        let counts: Vec<(u64, u64)> = acts
            .par_chunks(rows)
            .enumerate()
            .map(|(j, a)| {
                let f = best[j].0;
                a.iter().enumerate().fold((0, 0), |(n, tp), (r, &v)| {
                    let fires = v > 0.0;
                    let feature = on[r * words + f / 64] >> (f % 64) & 1 == 1;
                    (n + fires as u64, tp + (fires && feature) as u64)
                })
            })
            .collect();
        for (j, (n, tp)) in counts.into_iter().enumerate() {
            self.fired[j] += n;
            self.tp[j] += tp;
        }
        // Row-major activations for the (sparse) decode.
        let mut f = vec![0f32; rows * s];
        for (j, a) in acts.chunks(rows).enumerate() {
            for (r, &v) in a.iter().enumerate() {
                f[r * s + j] = v;
            }
        }
        let x_hat = self.sae.decode(&f);
        let mut sq_err = 0f64;
        for (x, y) in b.x.chunks(d).zip(x_hat.chunks(d)) {
            let norm_x = dot(x, x).sqrt() as f64;
            if norm_x > 1e-6 {
                self.shrinkage_sum += dot(y, y).sqrt() as f64 / norm_x;
                self.shrinkage_rows += 1;
            }
            sq_err += x
                .iter()
                .zip(y)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
        }
        self.ev.add(&b.x, d, sq_err);
        self.samples += rows as u64;
    }

    /// The report over every batch added.
    pub fn finish(self) -> SampleReport {
        let n = self.samples.max(1) as f64;
        let mut scores: Vec<Scores> = Vec::with_capacity(self.fired.len());
        let latents: Vec<LatentScore> = (0..self.fired.len())
            .map(|j| {
                let (f, c) = self.best[j];
                let counts = Counts::new(
                    self.fired[j],
                    self.tp[j],
                    self.feature_fired[f],
                    self.samples,
                );
                let sc = counts.scores();
                scores.push(sc);
                LatentScore {
                    latent: j,
                    feature: f,
                    abs_cos: c,
                    fired: self.fired[j],
                    precision: sc.precision,
                    recall: sc.recall,
                    f1: sc.f1,
                }
            })
            .collect();
        let mean = mean_scores(&scores);
        let var = self.ev.total_variance();
        let explained_variance = if self.samples == 0 {
            0.0
        } else if var / n < 1e-10 {
            if self.ev.sq_err / n < 1e-10 {
                1.0
            } else {
                0.0
            }
        } else {
            1.0 - self.ev.sq_err / var
        };
        SampleReport {
            samples: self.samples,
            true_l0: self.true_active as f64 / n,
            l0: self.fired.iter().sum::<u64>() as f64 / n,
            dead_latents: self.fired.iter().filter(|&&k| k == 0).count(),
            shrinkage: if self.shrinkage_rows == 0 {
                0.0
            } else {
                self.shrinkage_sum / self.shrinkage_rows as f64
            },
            explained_variance,
            precision: mean.precision,
            recall: mean.recall,
            f1: mean.f1,
            accuracy: mean.accuracy,
            latents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SAE that reads the axes of R² exactly: latent j = ReLU(x_j), x̂ = f.
    fn axis_sae() -> Sae {
        let mut sae = Sae::zeros(2, 2, false);
        sae.w_enc = vec![1.0, 0.0, 0.0, 1.0];
        sae.w_dec = vec![1.0, 0.0, 0.0, 1.0];
        sae
    }

    #[test]
    fn exact_codes_score_one_and_halved_outputs_shrink() {
        // Truth: feature 0 = x axis, feature 1 = y axis; rows (2,0), (0,3), (1,1), (0,0).
        let batch = SampleBatch {
            x: vec![2.0, 0.0, 0.0, 3.0, 1.0, 1.0, 0.0, 0.0],
            offsets: vec![0, 1, 2, 4, 4],
            features: vec![0, 1, 0, 1],
            values: vec![2.0, 3.0, 1.0, 1.0],
        };
        let sae = axis_sae();
        let mut m = SampleMetrics::new(&sae, vec![(0, 1.0), (1, 1.0)], 2);
        m.add(&batch);
        let r = m.finish();
        assert_eq!((r.samples, r.dead_latents), (4, 0));
        assert!((r.true_l0 - 1.0).abs() < 1e-12 && (r.l0 - 1.0).abs() < 1e-12);
        assert!((r.f1 - 1.0).abs() < 1e-12 && (r.accuracy - 1.0).abs() < 1e-12);
        assert!((r.explained_variance - 1.0).abs() < 1e-9);
        // The zero row is left out of the shrinkage.
        assert!((r.shrinkage - 1.0).abs() < 1e-6);

        // Decoder halved: x̂ = x/2, so shrinkage 0.5 and EV = 1 − Σ‖x/2‖²/Σ‖x − x̄‖².
        let mut half = axis_sae();
        half.w_dec = vec![0.5, 0.0, 0.0, 0.5];
        let mut m = SampleMetrics::new(&half, vec![(0, 1.0), (1, 1.0)], 2);
        m.add(&batch);
        let r = m.finish();
        assert!((r.shrinkage - 0.5).abs() < 1e-6);
        // Σ‖x‖² = 4 + 9 + 2 = 15, x̄ = (0.75, 1), Σ‖x − x̄‖² = 15 − 4·(0.5625 + 1) = 8.75.
        assert!((r.explained_variance - (1.0 - 3.75 / 8.75)).abs() < 1e-9);
    }

    #[test]
    fn a_latent_on_the_wrong_feature_and_a_dead_one() {
        // Latent 0 reads x but is matched to feature 1 (y); latent 1 never fires.
        let batch = SampleBatch {
            x: vec![2.0, 0.0, 0.0, 3.0, 1.0, 1.0],
            offsets: vec![0, 1, 2, 4],
            features: vec![0, 1, 0, 1],
            values: vec![2.0, 3.0, 1.0, 1.0],
        };
        let mut sae = axis_sae();
        sae.b_enc = vec![0.0, -10.0];
        let mut m = SampleMetrics::new(&sae, vec![(1, 0.0), (1, 1.0)], 2);
        m.add(&batch);
        let r = m.finish();
        // Latent 0 fires on rows 0 and 2; feature 1 on rows 1 and 2: TP 1, FP 1, FN 1, TN 0.
        let l0 = &r.latents[0];
        assert_eq!(l0.fired, 2);
        assert!((l0.precision - 0.5).abs() < 1e-12 && (l0.recall - 0.5).abs() < 1e-12);
        assert_eq!((r.latents[1].f1, r.dead_latents), (0.0, 1));
        assert!((r.f1 - 0.25).abs() < 1e-12, "{}", r.f1);
        // Accuracy: latent 0 1/3, latent 1 (never fires, feature 1 on 2 of 3 rows) 1/3.
        assert!((r.accuracy - 1.0 / 3.0).abs() < 1e-12);
    }
}
