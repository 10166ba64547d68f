//! unravel: take features out of superposition.
//!
//! Stages, left to right: `corpus` (read, tokenize, pack) and `models` (hooked transformers) →
//! `extract` (activations into parquet shards, via `store`) / `trace` (hooks of a few texts to
//! safetensors). Later stages import only stages to their left. Under every stage: `kernels`
//! (the shared CPU kernels) and `hub` (the Hugging Face hub, for models, datasets and SAEs).

pub mod analysis;
pub mod corpus;
pub mod device;
pub mod extract;
pub mod folder_lock;
pub mod hub;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod models;
pub mod pipeline;
pub mod report;
pub mod sae;
pub mod store;
pub mod synth;
pub mod toy;
pub mod trace;
