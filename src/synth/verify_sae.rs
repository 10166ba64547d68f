//! `unravel verify --sae` as a library entry point: an SAE's decoder against the planted
//! directions of a synth dataset (the metrics are `verify::recovery`'s), and the SAE on samples
//! with their true codes (`metrics::samples`).

use std::path::Path;

use super::bench::BenchModel;
use super::checks::Check;
use super::metrics::generated_samples::generated_batches;
use super::metrics::planted_samples::{planted_batches, SamplesError};
use super::metrics::{matching, SampleMetrics};
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

/// Adds to `r` the metrics measured on the last `samples` rows of the planted dataset in
/// `data_dir` with their stored codes, read in batches of `batch` rows; `progress(rows)` after
/// each batch.
pub fn add_planted_samples(
    r: &mut RecoveryReport,
    sae: &Sae,
    truth: &Truth,
    data_dir: &Path,
    samples: u64,
    batch: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(), SamplesError> {
    let n = truth.directions.len() / truth.d.max(1);
    let mut m = sample_metrics(sae, truth);
    let mut done = 0u64;
    planted_batches(data_dir, samples, batch, n, &mut |b| {
        m.add(b);
        done += b.rows() as u64;
        progress(done);
    })?;
    r.samples = Some(m.finish());
    Ok(())
}

/// Adds to `r` the metrics measured on `samples` held-out rows drawn from the generator
/// `model` (whose truth `truth` is, [`generator_truth`]), in batches of `batch` rows;
/// `progress(rows)` after each batch.
///
/// [`generator_truth`]: super::metrics::generated_samples::generator_truth
pub fn add_generated_samples(
    r: &mut RecoveryReport,
    sae: &Sae,
    truth: &Truth,
    model: &BenchModel,
    samples: u64,
    batch: usize,
    progress: &mut dyn FnMut(u64),
) {
    let mut m = sample_metrics(sae, truth);
    let mut done = 0u64;
    generated_batches(model, samples, batch, &mut |b| {
        m.add(b);
        done += b.rows() as u64;
        progress(done);
    });
    r.samples = Some(m.finish());
}

/// Empty sample metrics for `sae`, each latent matched to its best true feature.
fn sample_metrics<'a>(sae: &'a Sae, truth: &Truth) -> SampleMetrics<'a> {
    let n = truth.directions.len() / truth.d.max(1);
    let cos = matching::cosines(&sae.w_dec, &truth.directions, truth.d);
    SampleMetrics::new(sae, matching::best_features(&cos, sae.d_sae, n), n)
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
