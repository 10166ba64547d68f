//! Toy models of superposition (Elhage et al. 2022): n sparse features through d < n hidden
//! dimensions and back, many instances trained in one batched candle graph, with the paper's
//! experiments (`pentagon`, `sparse-vs-dense`, `importance`, `hidden-sizes`, `wtw`, `phase`),
//! their metrics and SVG plots.
//!
//! Order of reading: `settings` (what to train) → `data` (the inputs) → `train` (the model) →
//! `metrics` (per instance) → `experiments` (run + summarise) → `output` (results.json and the
//! plots) → `plots`. Metric definitions: docs/metrics.md, "Toy models".

pub mod data;
pub mod error;
pub mod experiments;
pub mod metrics;
pub mod output;
pub mod plots;
pub mod settings;
pub mod train;

pub use error::ToyError;
pub use experiments::{run_experiment, ToyResults};
pub use settings::{Experiment, ToyConfig, ToyFile, ToySettings};
pub use train::{train, Trained, TrainedInstance};
