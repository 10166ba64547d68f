//! Each latent as a detector of its best-matching true feature (SAELens
//! `sae_lens/synthetic/evals.py`, `ClassificationMetricsCalculator`): on every sample the latent
//! "fires" when its activation is > 0 and the feature "fires" when its true activation is > 0;
//! per latent TP, FP, FN, TN count the four cases; precision = TP/(TP+FP), recall = TP/(TP+FN),
//! F1 their harmonic mean, each 0 where its denominator is 0, accuracy = (TP+TN)/samples. The
//! reported figures are means over **all** latents (a dead latent scores 0).

use serde::{Deserialize, Serialize};

/// A latent's counts over the samples seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

/// One latent's scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
}

/// A ratio that is 0 where the denominator is.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl Counts {
    /// Counts from the samples a latent fired on (`fired`), the samples on which it and its
    /// feature both fired (`tp`), the samples its feature fired on (`feature_fired`), of
    /// `samples`.
    pub fn new(fired: u64, tp: u64, feature_fired: u64, samples: u64) -> Counts {
        let (fp, fn_) = (fired - tp, feature_fired - tp);
        Counts {
            tp,
            fp,
            fn_,
            tn: samples - tp - fp - fn_,
        }
    }

    pub fn scores(&self) -> Scores {
        let (tp, fp, fn_, tn) = (
            self.tp as f64,
            self.fp as f64,
            self.fn_ as f64,
            self.tn as f64,
        );
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        Scores {
            precision,
            recall,
            f1: ratio(2.0 * precision * recall, precision + recall),
            accuracy: (tp + tn) / (tp + fp + fn_ + tn).max(1e-8),
        }
    }
}

/// The mean of each score over the latents (zeros without latents).
pub fn mean_scores(per_latent: &[Scores]) -> Scores {
    let n = per_latent.len().max(1) as f64;
    let sum = |f: fn(&Scores) -> f64| per_latent.iter().map(f).sum::<f64>() / n;
    Scores {
        precision: sum(|s| s.precision),
        recall: sum(|s| s.recall),
        f1: sum(|s| s.f1),
        accuracy: sum(|s| s.accuracy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_on_known_counts() {
        // Fired on 4 of 10 samples, 3 of them with its feature, which fired on 6.
        let c = Counts::new(4, 3, 6, 10);
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (3, 1, 3, 3));
        let s = c.scores();
        assert!((s.precision - 0.75).abs() < 1e-12 && (s.recall - 0.5).abs() < 1e-12);
        assert!((s.f1 - 0.6).abs() < 1e-12 && (s.accuracy - 0.6).abs() < 1e-12);
        // A dead latent: precision, recall and F1 are 0, not NaN.
        let dead = Counts::new(0, 0, 6, 10).scores();
        assert_eq!((dead.precision, dead.recall, dead.f1), (0.0, 0.0, 0.0));
        assert!((dead.accuracy - 0.4).abs() < 1e-12);
        let m = mean_scores(&[s, dead]);
        assert!((m.f1 - 0.3).abs() < 1e-12 && (m.precision - 0.375).abs() < 1e-12);
    }
}
