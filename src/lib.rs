//! unravel: take features out of superposition.
//!
//! Stages, left to right: `corpus` (read, tokenize, pack) and `models` (hooked transformers) →
//! `extract` (activations into parquet shards, via `store`) / `trace` (hooks of a few texts to
//! safetensors). Later stages import only stages to their left.

pub mod analysis;
pub mod corpus;
pub mod device;
pub mod extract;
pub mod folder_lock;
pub mod inspect;
pub mod io;
pub mod memory;
pub mod models;
pub mod pipeline;
pub mod plot;
pub mod report;
pub mod sae;
mod simd;
pub mod store;
pub mod synth;
pub mod toy;
pub mod trace;
