//! Metrics with the exact definitions of docs/metrics.md, "SAE reconstruction".
//!
//! - FVU = Σ_t‖x_t − x̂_t‖² / Σ_t‖x_t − x̄‖², x̄ the mean over the whole evaluated set (not per
//!   batch, not variance about zero); EV = 1 − FVU.
//! - L0 = mean over tokens of the number of non-zero features.
//! - Density p_i = fraction of tokens where feature i fires; dead = did not fire in the last
//!   `dead_window` tokens (or in all tokens so far, early in a run); dense = p_i > 0.1; the
//!   histogram is over log10(p_i + 1e-10).

use serde::{Deserialize, Serialize};

/// Features firing on more than this fraction of tokens count as dense.
pub const DENSE_THRESHOLD: f64 = 0.1;

/// Accumulates what FVU needs, in f64: Σx (per dimension), Σ‖x‖², Σ‖x − x̂‖², tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FvuAccumulator {
    pub tokens: u64,
    pub sum_x: Vec<f64>,
    pub sum_x2: f64,
    pub sq_err: f64,
}

impl FvuAccumulator {
    /// Adds the inputs `x [rows, d]` and their summed squared reconstruction error.
    pub fn add(&mut self, x: &[f32], d: usize, sq_err: f64) {
        if self.sum_x.len() != d {
            self.sum_x = vec![0.0; d];
        }
        for row in x.chunks(d) {
            for (s, &v) in self.sum_x.iter_mut().zip(row) {
                *s += v as f64;
                self.sum_x2 += (v as f64) * (v as f64);
            }
            self.tokens += 1;
        }
        self.sq_err += sq_err;
    }

    /// Σ‖x_t − x̄‖² = Σ‖x‖² − n‖x̄‖².
    pub fn total_variance(&self) -> f64 {
        let n = self.tokens.max(1) as f64;
        let mean_sq: f64 = self.sum_x.iter().map(|s| (s / n) * (s / n)).sum();
        (self.sum_x2 - n * mean_sq).max(0.0)
    }

    /// Fraction of variance unexplained (NaN for an empty or constant set).
    pub fn fvu(&self) -> f64 {
        let var = self.total_variance();
        if var > 0.0 {
            self.sq_err / var
        } else {
            f64::NAN
        }
    }
}

/// Per-feature firing record over training: when each feature last fired and counts over the
/// current and the last complete density window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTracker {
    pub window: u64,
    /// Tokens seen when feature i last fired (0: never).
    pub last_fired: Vec<u64>,
    pub counts: Vec<u64>,
    pub counts_tokens: u64,
    pub last_window: Option<(Vec<u64>, u64)>,
    pub tokens: u64,
}

impl FeatureTracker {
    pub fn new(d_sae: usize, window: u64) -> FeatureTracker {
        FeatureTracker {
            window,
            last_fired: vec![0; d_sae],
            counts: vec![0; d_sae],
            counts_tokens: 0,
            last_window: None,
            tokens: 0,
        }
    }

    /// Records one batch: `fired[i]` tokens of `rows` fired feature i.
    pub fn record(&mut self, fired: &[u32], rows: usize) {
        self.tokens += rows as u64;
        for (i, &n) in fired.iter().enumerate() {
            if n > 0 {
                self.last_fired[i] = self.tokens;
                self.counts[i] += n as u64;
            }
        }
        self.counts_tokens += rows as u64;
        if self.counts_tokens >= self.window {
            let done = std::mem::replace(&mut self.counts, vec![0; fired.len()]);
            self.last_window = Some((done, self.counts_tokens));
            self.counts_tokens = 0;
        }
    }

    /// Features that did not fire in the last `window` tokens (or ever, before that many).
    pub fn dead(&self) -> Vec<bool> {
        let span = self.window.min(self.tokens);
        self.last_fired
            .iter()
            .map(|&t| self.tokens > 0 && self.tokens - t >= span)
            .collect()
    }

    pub fn dead_fraction(&self) -> f64 {
        let d = self.dead();
        d.iter().filter(|&&x| x).count() as f64 / d.len().max(1) as f64
    }

    /// Densities over the last complete window (the current partial one before that).
    pub fn densities(&self) -> Vec<f64> {
        let (counts, tokens) = match &self.last_window {
            Some((c, t)) => (c, *t),
            None => (&self.counts, self.counts_tokens),
        };
        counts
            .iter()
            .map(|&c| c as f64 / tokens.max(1) as f64)
            .collect()
    }

    /// Forgets feature i's history (after resampling it).
    pub fn reset_feature(&mut self, i: usize) {
        self.last_fired[i] = self.tokens;
    }
}

/// Fraction of features with density above [`DENSE_THRESHOLD`].
pub fn dense_fraction(densities: &[f64]) -> f64 {
    densities.iter().filter(|&&p| p > DENSE_THRESHOLD).count() as f64
        / densities.len().max(1) as f64
}

/// Histogram of log10(p + 1e-10) in 0.5-wide bins from −10 to 0: (lower edge, count).
pub fn log_density_histogram(densities: &[f64]) -> Vec<(f64, u64)> {
    let bins = 20;
    let mut counts = vec![0u64; bins];
    for &p in densities {
        let l = (p + 1e-10).log10();
        let b = (((l + 10.0) / 0.5).floor() as i64).clamp(0, bins as i64 - 1) as usize;
        counts[b] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(b, c)| (-10.0 + 0.5 * b as f64, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvu_uses_the_mean_of_the_whole_set() {
        // Two batches with different means: per-batch variance would differ from the total.
        let mut acc = FvuAccumulator::default();
        acc.add(&[1.0, 1.0, 1.0, 1.0], 2, 1.0);
        acc.add(&[3.0, 3.0, 3.0, 3.0], 2, 1.0);
        // x̄ = (2, 2); Σ‖x − x̄‖² = 4 tokens × 2 dims × 1 = 8.
        assert!((acc.total_variance() - 8.0).abs() < 1e-12);
        assert!((acc.fvu() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn dead_and_density_windows() {
        let mut t = FeatureTracker::new(3, 100);
        t.record(&[5, 0, 0], 50);
        assert_eq!(t.dead(), vec![false, true, true]);
        t.record(&[0, 1, 0], 50); // window complete at 100 tokens
        assert_eq!(t.densities(), vec![0.05, 0.01, 0.0]);
        t.record(&[0, 0, 0], 40);
        // Feature 0 last fired at 50 tokens, 140 − 50 = 90 < 100: alive; feature 2 never fired.
        assert_eq!(t.dead(), vec![false, false, true]);
        t.record(&[0, 0, 0], 50);
        assert_eq!(t.dead(), vec![true, false, true]);
        assert!((t.dead_fraction() - 2.0 / 3.0).abs() < 1e-12);
        let h = log_density_histogram(&[0.0, 1e-3, 0.5]);
        assert_eq!(h[0], (-10.0, 1));
        assert_eq!(h.iter().map(|b| b.1).sum::<u64>(), 3);
        assert_eq!(h[14].1, 1); // log10(1e-3) = −3 → bin [−3, −2.5)
    }
}
