//! `unravel verify --sae` as a library entry point: an SAE's decoder against the planted
//! directions of a synth dataset (the metrics are `verify::recovery`'s).

use std::path::Path;

use super::checks::Check;
use super::truth::Truth;
use super::verify::{recovery, RecoveryReport};
use crate::sae::Sae;

/// The SAE reads another width than the planted directions have.
#[derive(Debug, thiserror::Error)]
#[error("the SAE reads d_in = {sae_d_in}, the planted directions have d = {d}")]
pub struct WidthError {
    pub sae_d_in: usize,
    pub d: usize,
}

/// Thresholds; each one given adds a check.
#[derive(Debug, Clone, Default)]
pub struct SaeThresholds {
    pub min_mmcs: Option<f64>,
    pub min_mcc: Option<f64>,
    pub min_recovered: Option<f64>,
    pub max_dead: Option<f64>,
}

/// Scores the SAE exported in `sae_dir` against the truth; a planted feature counts as
/// recovered when its best cosine is at least `threshold`.
pub fn verify_sae(
    truth: &Truth,
    sae_dir: &Path,
    sae: &Sae,
    threshold: f32,
) -> Result<RecoveryReport, WidthError> {
    if sae.d_in != truth.d {
        return Err(WidthError {
            sae_d_in: sae.d_in,
            d: truth.d,
        });
    }
    let alive = alive_latents(sae_dir, sae.d_sae);
    Ok(recovery(
        &truth.directions,
        &truth.frequencies,
        &sae.w_dec,
        &alive,
        truth.d,
        threshold,
    ))
}

/// Live latents from the export's sparsity file (log10 density; −10 = never fired); all live
/// when there is none.
fn alive_latents(sae_dir: &Path, d_sae: usize) -> Vec<bool> {
    candle_core::safetensors::load(
        sae_dir.join("sparsity.safetensors"),
        &candle_core::Device::Cpu,
    )
    .ok()
    .and_then(|t| t.get("sparsity").and_then(|s| s.to_vec1::<f32>().ok()))
    .map(|s| s.iter().map(|&l| l > -9.99).collect())
    .unwrap_or_else(|| vec![true; d_sae])
}

/// The checks the thresholds ask for, in the order the table shows them.
pub fn sae_checks(r: &RecoveryReport, t: &SaeThresholds) -> Vec<Check> {
    let dead_frac = r.dead_latents as f64 / r.d_sae.max(1) as f64;
    [
        t.min_mmcs.map(|m| Check::at_least("MMCS", r.mmcs, m)),
        t.min_mcc.map(|m| Check::at_least("MCC", r.mcc, m)),
        t.min_recovered
            .map(|m| Check::at_least("recovered", r.recovered, m)),
        t.max_dead
            .map(|m| Check::at_most("dead latents", dead_frac, m)),
    ]
    .into_iter()
    .flatten()
    .collect()
}
