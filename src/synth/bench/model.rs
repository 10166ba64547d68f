//! The generated model ([`BenchModel`]: dictionary, probabilities, magnitudes, hierarchy,
//! correlation) and its samples: row `i` is a pure function of (spec, seed, i).
//!
//! A row, as SAELens's `ActivationGenerator.sample` then `FeatureDictionary.forward`:
//! 1. which features fire: the Gaussian copula z = F g + √(1 − |F_i|²) η (g ~ N(0, I_rank),
//!    η ~ N(0, I_n)), feature i firing when z_i > Φ⁻¹(1 − p_i); without correlation, with
//!    probability p_i;
//! 2. each firing feature's magnitude: relu(mean_i + std_i · N(0, 1));
//! 3. the hierarchy (gating, exclusion, scaling; see `hierarchy.rs`);
//! 4. x = Σ_i a_i · direction_i + bias.
//!
//! Step 1 is the cost (n features a row): per feature, the test η > c_i is decided from one
//! uniform u against a table of the normal tail on a grid of c (exact: the tail is monotone,
//! so u above the tail at the grid point below c rejects, u below the one above accepts, and
//! only the rare u in between needs the tail at c itself).

use rayon::prelude::*;

use super::correlation::LowRank;
use super::hierarchy::Hierarchy;
use super::normal::{quantile, upper_tail, RowRng};
use super::spec::BenchSpec;
use super::{dictionary, firing, SparseCodes};
use rand_distr::{Distribution, StandardNormal};

/// RNG streams of one seed: each use of randomness has its own.
const STREAM_ROWS: u64 = 0;
const STREAM_HIERARCHY: u64 = 3;
const STREAM_CORRELATION: u64 = 4;
const STREAM_STDS: u64 = 1;
const STREAM_DICTIONARY: u64 = 5;

/// The tail table: Q(c) at c = C_LO + k / STEPS.
const C_LO: f64 = -9.0;
const C_HI: f64 = 9.0;
const STEPS: f64 = 64.0;

/// A generated model, ready to sample.
#[derive(Debug, Clone)]
pub struct BenchModel {
    pub spec: BenchSpec,
    /// Unit directions `[features, dims]`.
    pub directions: Vec<f32>,
    pub bias: Vec<f32>,
    /// Probabilities the copula is driven with (after compensation; what fires before the
    /// hierarchy gates it).
    pub probabilities: Vec<f64>,
    /// The Zipf probabilities before compensation (the spec's intended frequencies).
    pub base_probabilities: Vec<f64>,
    pub mean_magnitudes: Vec<f32>,
    pub std_magnitudes: Vec<f32>,
    pub hierarchy: Hierarchy,
    pub correlation: Option<LowRank>,
    /// Φ⁻¹(1 − p_i).
    thresholds: Vec<f64>,
    tail: Vec<f64>,
}

impl BenchModel {
    /// Builds the model of a checked spec; `progress(step, steps)` during orthogonalisation.
    pub fn build(spec: &BenchSpec, progress: &mut dyn FnMut(usize, usize)) -> BenchModel {
        let seed = spec.seed;
        let hierarchy = Hierarchy::build(spec, &mut RowRng::for_row(seed, STREAM_HIERARCHY, 0));
        let base = firing::zipf(spec);
        let probabilities = if spec.compensate {
            hierarchy.compensate(&base)
        } else {
            base.clone()
        };
        let correlation = (spec.correlation_rank > 0)
            .then(|| LowRank::build(spec, &mut RowRng::for_row(seed, STREAM_CORRELATION, 0)));
        let (directions, bias) = dictionary::build(
            spec,
            &mut RowRng::for_row(seed, STREAM_DICTIONARY, 0),
            progress,
        );
        let tail = (0..=((C_HI - C_LO) * STEPS) as usize)
            .map(|k| upper_tail(C_LO + k as f64 / STEPS))
            .collect();
        BenchModel {
            spec: spec.clone(),
            directions,
            bias,
            thresholds: probabilities.iter().map(|&p| quantile(1.0 - p)).collect(),
            probabilities,
            base_probabilities: base,
            mean_magnitudes: firing::means(spec),
            std_magnitudes: firing::stds(spec, &mut RowRng::for_row(seed, STREAM_STDS, 0)),
            hierarchy,
            correlation,
            tail,
        }
    }

    pub fn features(&self) -> usize {
        self.spec.features
    }

    pub fn dims(&self) -> usize {
        self.spec.dims
    }

    /// The true feature activations of row `index`: (feature, value > 0), sorted by feature.
    pub fn row_codes(&self, index: u64) -> Vec<(u32, f32)> {
        let mut rng = RowRng::for_row(self.spec.seed, STREAM_ROWS, index);
        let mut row = self.firing(&mut rng);
        for (f, v) in row.iter_mut() {
            let z: f32 = StandardNormal.sample(&mut rng);
            let i = *f as usize;
            *v = (self.mean_magnitudes[i] + self.std_magnitudes[i] * z).max(0.0);
        }
        row.retain(|&(_, v)| v > 0.0);
        self.hierarchy
            .apply(&mut row, &self.mean_magnitudes, &mut rng);
        row
    }

    /// The features that fire in a row before the hierarchy (value 0 for now), sorted.
    fn firing(&self, rng: &mut RowRng) -> Vec<(u32, f32)> {
        let mut out = Vec::with_capacity(128);
        let Some(c) = &self.correlation else {
            for (i, &p) in self.probabilities.iter().enumerate() {
                if rng.uniform() < p {
                    out.push((i as u32, 0.0));
                }
            }
            return out;
        };
        let shared = c.shared(rng);
        let steps = (C_HI - C_LO) * STEPS;
        for (i, (&t, (&m, &inv_s))) in self
            .thresholds
            .iter()
            .zip(shared.iter().zip(&c.inv_noise_std))
            .enumerate()
        {
            // Fire when η > (t − m) / s.
            let cut = (t - m as f64) * inv_s as f64;
            let u = rng.uniform();
            let k = (cut - C_LO) * STEPS;
            let fires = if k < 0.0 {
                u < upper_tail(cut)
            } else if k >= steps {
                false
            } else {
                let k = k as usize;
                if u >= self.tail[k] {
                    false
                } else if u < self.tail[k + 1] {
                    true
                } else {
                    u < upper_tail(cut)
                }
            };
            if fires {
                out.push((i as u32, 0.0));
            }
        }
        out
    }

    /// Rows `start .. start + n`: activations `[n, dims]` and their true codes.
    pub fn sample(&self, start: u64, n: usize) -> (Vec<f32>, SparseCodes) {
        let rows: Vec<Vec<(u32, f32)>> = (0..n as u64)
            .into_par_iter()
            .map(|r| self.row_codes(start + r))
            .collect();
        let x = self.synthesize(&rows);
        (x, SparseCodes::from_rows(&rows))
    }

    /// Only the activations of rows `start .. start + n` (`[n, dims]`).
    pub fn sample_x(&self, start: u64, n: usize) -> Vec<f32> {
        let d = self.dims();
        let mut x = vec![0f32; n * d];
        x.par_chunks_mut(d).enumerate().for_each(|(r, out)| {
            let codes = self.row_codes(start + r as u64);
            self.write_row(&codes, out);
        });
        x
    }

    /// x = Σ a_i · direction_i + bias, row by row.
    fn synthesize(&self, rows: &[Vec<(u32, f32)>]) -> Vec<f32> {
        let d = self.dims();
        let mut x = vec![0f32; rows.len() * d];
        x.par_chunks_mut(d)
            .zip(rows.par_iter())
            .for_each(|(out, codes)| self.write_row(codes, out));
        x
    }

    fn write_row(&self, codes: &[(u32, f32)], out: &mut [f32]) {
        let d = self.dims();
        out.copy_from_slice(&self.bias);
        for &(f, a) in codes {
            let f = f as usize;
            crate::kernels::axpy(a, &self.directions[f * d..(f + 1) * d], out);
        }
    }
}
