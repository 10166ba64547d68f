//! Synthetic activations with planted superposed features, written in the same shard format as
//! `unravel extract`, with the ground truth beside them — so every analysis can be checked
//! against a known answer.
//!
//! [`planted`] — `unravel synth`: planted feature directions; [`bench`] — `synth --preset`:
//! the SynthSAEBench-grade generator (hierarchy, correlation, Zipf; streamed by `train --synth`); [`neurons`] — `synth --neurons`:
//! planted polysemantic neurons and the audit's score against them; [`plant`] — `unravel plant`:
//! planted features added to a real dataset; [`truth`] — where the truth is kept and read back;
//! [`verify`] — MMCS, MCC and recovery of planted features by an SAE; `unravel verify`:
//! [`verify_sae`] (an SAE against planted features), [`verify_audit`] (an audit against planted
//! neurons), [`checks`] (the pass/fail thresholds); [`metrics`] — SAELens's metrics on planted
//! data (MCC, uniqueness, F1, shrinkage, EV, L0, dead latents). The truth folder:
//! docs/formats.md; the metrics: docs/metrics.md.

pub mod bench;
pub mod checks;
pub mod error;
pub mod metrics;
pub mod neurons;
pub mod plant;
pub mod planted;
pub mod truth;
pub mod verify;
pub mod verify_audit;
pub mod verify_sae;

pub use error::SynthError;
pub use planted::{write_planted, PlantedSpec, PlantedTruth};
