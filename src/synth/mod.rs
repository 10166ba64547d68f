//! Synthetic activations with planted superposed features, written in the same shard format as
//! `unravel extract`, with the ground truth beside them — so every analysis can be checked
//! against a known answer.

pub mod checks;
pub mod neurons;
pub mod plant;
pub mod planted;
pub mod truth;
pub mod verify;
pub mod verify_audit;
pub mod verify_sae;

pub use planted::{write_planted, PlantedSpec, PlantedTruth};
