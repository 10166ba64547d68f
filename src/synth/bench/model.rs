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
//! Steps 1 and 4 are the cost: step 1 tests n features a row (`fire.rs`, `cuts.rs`), step 4
//! reads a dictionary row (3 KB) from memory for each of the ~34 firing features. Rows are made
//! in groups of [`GROUP`] (cache reuse), each from its own RNG, so a row is the same in any
//! group.

use rayon::prelude::*;

use super::correlation::LowRank;
use super::fire::Firing;
use super::hierarchy::Hierarchy;
use super::normal::{quantile, RowRng};
use super::spec::BenchSpec;
use super::{dictionary, firing, SparseCodes};
use rand_distr::{Distribution, StandardNormal};

/// RNG streams of one seed: each use of randomness has its own.
const STREAM_ROWS: u64 = 0;
const STREAM_HIERARCHY: u64 = 3;
const STREAM_CORRELATION: u64 = 4;
const STREAM_STDS: u64 = 1;
const STREAM_DICTIONARY: u64 = 5;

/// Rows made together (they share each chunk of the correlation factor in cache).
pub const GROUP: usize = 16;

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
    /// The firing test's tables.
    firing: Firing,
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
        let thresholds = probabilities
            .iter()
            .map(|&p| quantile(1.0 - p) as f32)
            .collect();
        let firing = match &correlation {
            Some(c) => Firing::new(thresholds, c.inv_noise_std.clone(), &c.factor_t),
            None => Firing::new(thresholds, vec![1.0; spec.features], &[]),
        };
        BenchModel {
            spec: spec.clone(),
            directions,
            bias,
            probabilities,
            base_probabilities: base,
            mean_magnitudes: firing::means(spec),
            std_magnitudes: firing::stds(spec, &mut RowRng::for_row(seed, STREAM_STDS, 0)),
            hierarchy,
            correlation,
            firing,
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
        self.group_codes(index, 1).pop().unwrap_or_default()
    }

    /// The codes of rows `first .. first + len`: which fire (`fire.rs`; the hierarchy's
    /// features by [`Hierarchy::walk`], only under surviving parents), and their magnitudes
    /// relu(mean + std · N(0, 1)).
    fn group_codes(&self, first: u64, len: usize) -> Vec<Vec<(u32, f32)>> {
        let mut rngs: Vec<RowRng> = (0..len as u64)
            .map(|r| RowRng::for_row(self.spec.seed, STREAM_ROWS, first + r))
            .collect();
        let (free, shared) = self.firing.fire(&mut rngs, self.hierarchy.size);
        let (mean, std) = (&self.mean_magnitudes, &self.std_magnitudes);
        let magnitude = |rng: &mut RowRng, i: usize| -> f32 {
            let z: f32 = StandardNormal.sample(rng);
            (mean[i] + std[i] * z).max(0.0)
        };
        let mut rows = Vec::with_capacity(len);
        // Every row tests every root: their cuts are computed for the group at once.
        let roots = self.hierarchy.roots;
        let root_cuts = self.firing.cuts(&shared, 0, roots);
        for (r, ((free, g), rng)) in free.into_iter().zip(&shared).zip(&mut rngs).enumerate() {
            let root_cuts = &root_cuts[r * roots..(r + 1) * roots];
            let fires = |rng: &mut RowRng, f: usize| {
                let cut = match root_cuts.get(f) {
                    Some(&c) => c,
                    None => self.firing.cut(g, f),
                };
                self.firing.test(rng, cut)
            };
            let mut row = self.hierarchy.walk(mean, rng, &fires, &magnitude);
            for (f, _) in free {
                let v = magnitude(rng, f as usize);
                if v > 0.0 {
                    row.push((f, v));
                }
            }
            rows.push(row);
        }
        rows
    }

    /// The codes of rows `start .. start + n`, groups in parallel.
    pub fn codes(&self, start: u64, n: usize) -> Vec<Vec<(u32, f32)>> {
        let groups: Vec<Vec<Vec<(u32, f32)>>> = (0..n)
            .step_by(GROUP)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|g| self.group_codes(start + g as u64, GROUP.min(n - g)))
            .collect();
        groups.into_iter().flatten().collect()
    }

    /// Rows `start .. start + n`: activations `[n, dims]` and their true codes.
    pub fn sample(&self, start: u64, n: usize) -> (Vec<f32>, SparseCodes) {
        let rows = self.codes(start, n);
        let x = self.synthesize(&rows);
        (x, SparseCodes::from_rows(&rows))
    }

    /// Only the activations of rows `start .. start + n` (`[n, dims]`).
    pub fn sample_x(&self, start: u64, n: usize) -> Vec<f32> {
        let d = self.dims();
        let mut x = vec![0f32; n * d];
        x.par_chunks_mut(GROUP * d)
            .enumerate()
            .for_each(|(g, out)| {
                let first = start + (g * GROUP) as u64;
                let rows = self.group_codes(first, out.len() / d);
                for (codes, out) in rows.iter().zip(out.chunks_mut(d)) {
                    self.write_row(codes, out);
                }
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
