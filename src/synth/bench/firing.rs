//! Per-feature firing probabilities and magnitudes, as SAELens's `firing_probabilities.py` and
//! `firing_magnitudes.py` make them (feature 0 is the most frequent):
//!
//! - probability: p_i = p_min + (p_max − p_min) · (r_i − r_min) / (r_max − r_min), r_i = 1 / (i+1)^e
//!   (Zipf, min-max scaled), then the hierarchy's compensation;
//! - mean magnitude: linear from `mean_start` (feature 0) to `mean_end` (the last);
//! - magnitude std: one draw per feature of |N(std_mean, std_std²)|;
//! - a firing feature's magnitude: relu(mean_i + std_i · N(0, 1)).

use rand_distr::{Distribution, StandardNormal};

use super::normal::RowRng;
use super::spec::BenchSpec;

/// Zipfian probabilities (before any compensation), in f32 like SAELens's.
pub fn zipf(spec: &BenchSpec) -> Vec<f64> {
    let n = spec.features;
    if n == 1 {
        return vec![spec.p_max];
    }
    let r: Vec<f32> = (1..=n)
        .map(|k| 1.0 / (k as f32).powf(spec.zipf_exponent as f32))
        .collect();
    let (lo, hi) = (r[n - 1], r[0]);
    let (p_min, p_max) = (spec.p_min as f32, spec.p_max as f32);
    r.iter()
        .map(|&v| (p_min + (p_max - p_min) * (v - lo) / (hi - lo)) as f64)
        .collect()
}

/// Mean magnitudes: `torch.linspace(mean_start, mean_end, n)`.
pub fn means(spec: &BenchSpec) -> Vec<f32> {
    let n = spec.features;
    if n == 1 {
        return vec![spec.mean_start as f32];
    }
    let (a, b) = (spec.mean_start, spec.mean_end);
    (0..n)
        .map(|i| (a + (b - a) * i as f64 / (n - 1) as f64) as f32)
        .collect()
}

/// Magnitude standard deviations: |N(std_mean, std_std²)|, one per feature.
pub fn stds(spec: &BenchSpec, rng: &mut RowRng) -> Vec<f32> {
    (0..spec.features)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            (spec.std_mean + spec.std_std * z).abs() as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_spans_p_max_to_p_min_and_falls() {
        let p = zipf(&BenchSpec::default());
        assert!((p[0] - 0.4).abs() < 1e-7 && (p[16_383] - 5e-4).abs() < 1e-7);
        assert!(p.windows(2).all(|w| w[0] >= w[1]));
        // r_2 = 1/√2: 5e-4 + 0.3995 · (0.70711 − 0.0078125) / (1 − 0.0078125)
        assert!((p[1] - 0.282_068).abs() < 1e-5, "{}", p[1]);
    }

    #[test]
    fn means_are_linear() {
        let m = means(&BenchSpec::default());
        assert_eq!((m[0], m[16_383]), (5.0, 4.0));
        assert!((m[8_191] - (5.0 - 8_191.0 / 16_383.0)).abs() < 1e-5);
    }
}
