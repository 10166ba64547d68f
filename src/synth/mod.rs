//! Synthetic activations with planted superposed features, written in the same shard format as
//! `unravel extract`, with the ground truth beside them — so every analysis can be checked
//! against a known answer.

pub mod neurons;
pub mod plant;
pub mod planted;
pub mod verify;

pub use planted::{write_planted, PlantedSpec, PlantedTruth};
