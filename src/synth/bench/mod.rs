//! A SynthSAEBench-grade generator (Chanin & Garriga-Alonso 2026; SAELens `sae_lens/synthetic`):
//! Zipfian firing probabilities, a hierarchy with mutually exclusive, parent-scaled children
//! and compensated probabilities, low-rank correlated firing, an orthogonalised dictionary,
//! per-feature magnitude distributions and a bias — and the SynthSAEBench-16k preset.
//!
//! One concept per file: [`spec`] (the knobs, presets, spec files), [`firing`] (probabilities
//! and magnitudes), [`hierarchy`], [`correlation`], [`dictionary`], [`model`] (building the model
//! and sampling rows), [`fire`] (the firing test, fast), [`cuts`] (its thresholds moved by the
//! correlation), [`normal`] (the normal tail, quantile and per-row RNG), [`stats`]
//! (measured statistics), [`write`] (`unravel synth --preset/--spec`: a dataset and its truth).
//!
//! # The API (what training and the metrics read)
//!
//! ```no_run
//! use unravel::synth::bench::{BenchModel, BenchSpec};
//! let spec = BenchSpec::load("synth-sae-bench-16k")?; // a preset, or a spec .toml file
//! let model = BenchModel::build(&spec, &mut |_step, _steps| {});
//! // Rows start .. start+n: x [n, dims] row-major, and the true feature activations.
//! let (x, codes) = model.sample(0, 1024);
//! let (features, values) = codes.row(0); // sorted feature ids, activations > 0
//! let x_only = model.sample_x(0, 1024); // the same x, without collecting codes
//! # Ok::<(), unravel::synth::SynthError>(())
//! ```
//!
//! Row `i` is a pure function of (spec, seed, i): the same in any batch, on any thread, after
//! any resume. Training streams rows `0..tokens`; evaluations use the disjoint range from
//! [`crate::sae::train::HELD_OUT_START`] (2^62) on. The model (`directions [features, dims]`,
//! `bias`, `probabilities`, `mean_magnitudes`, `hierarchy.parent`, ...) is public for metrics.
//!
//! Where this differs from SAELens (same distribution, not the same random numbers): torch's
//! RNG is not reproduced (directions, bias, magnitudes and rows are drawn from our own seeded
//! generators); with `exclusive` < 1 the exclusive parents are drawn by our RNG, not Python's
//! `random`.

pub mod correlation;
pub mod cuts;
pub mod dictionary;
pub mod fire;
pub mod firing;
pub mod hierarchy;
pub mod model;
pub mod normal;
pub mod published;
pub mod spec;
pub mod stats;
pub mod write;

pub use model::BenchModel;
pub use spec::{BenchSpec, PRESETS, PRESET_16K, PRESET_TINY};

/// True feature activations of a batch of rows, compressed by row: row `r` holds
/// `features[offsets[r]..offsets[r + 1]]` (sorted) with `values` alongside (all > 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseCodes {
    pub offsets: Vec<usize>,
    pub features: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseCodes {
    /// From per-row (feature, value) lists.
    pub fn from_rows(rows: &[Vec<(u32, f32)>]) -> SparseCodes {
        let mut c = SparseCodes {
            offsets: Vec::with_capacity(rows.len() + 1),
            ..Default::default()
        };
        c.offsets.push(0);
        for row in rows {
            for &(f, v) in row {
                c.features.push(f);
                c.values.push(v);
            }
            c.offsets.push(c.features.len());
        }
        c
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Row `r`: (features, values).
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.offsets[r], self.offsets[r + 1]);
        (&self.features[a..b], &self.values[a..b])
    }

    /// The rows as a dense `[rows, n_features]` matrix.
    pub fn dense(&self, n_features: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.rows() * n_features];
        for r in 0..self.rows() {
            let (f, v) = self.row(r);
            for (&f, &v) in f.iter().zip(v) {
                out[r * n_features + f as usize] = v;
            }
        }
        out
    }
}

/// The model as a training source (`unravel train --synth`): rows by index.
impl crate::sae::train::RowSource for BenchModel {
    fn d(&self) -> usize {
        self.dims()
    }
    fn rows(&self, start: u64, n: usize) -> Vec<f32> {
        self.sample_x(start, n)
    }
    fn fingerprint(&self) -> String {
        self.spec.fingerprint()
    }
    fn describe(&self) -> String {
        format!(
            "the synthetic generator {} ({} features in {} dims, seed {})",
            self.spec.fingerprint(),
            self.spec.features,
            self.spec.dims,
            self.spec.seed
        )
    }
}
