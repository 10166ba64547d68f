//! unravel: take features out of superposition.
//!
//! Stages, left to right: `models` (hooked transformers) → `trace` (hooks of a few texts to
//! safetensors). Later stages import only stages to their left.

pub mod device;
pub mod io;
pub mod models;
pub mod trace;
