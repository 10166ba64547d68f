//! SAE-against-ground-truth metrics defined as SAELens defines them (`sae_lens/synthetic/evals.py`,
//! `eval_sae_on_synthetic_data`), checked against SAELens itself by
//! `scripts/metrics_vs_saelens.py` (output in `tests/fixtures/metrics_vs_saelens.json`):
//! - [`hungarian`] — the rectangular linear assignment (SciPy's algorithm);
//! - [`matching`] — decoder against true directions: MCC, uniqueness, each latent's best match;
//! - [`f1`] — a latent as a detector of its best-matching feature: precision, recall, F1;
//! - [`samples`] — what is measured on samples with true codes, batch by batch: L0, true L0,
//!   dead latents, shrinkage, EV and the counts behind F1;
//! - [`planted_samples`] — those batches from a planted dataset with stored codes.
//!
//! Definitions: docs/metrics.md, "SAELens metrics on planted data".

pub mod f1;
pub mod generated_samples;
pub mod hungarian;
pub mod matching;
pub mod planted_samples;
pub mod samples;

pub use samples::{SampleBatch, SampleMetrics, SampleReport};

use crate::sae::Sae;

/// Evaluates `sae` against the true directions `truth [n, d]` on every batch of `batches`.
pub fn evaluate_samples(
    sae: &Sae,
    truth: &[f32],
    batches: impl IntoIterator<Item = SampleBatch>,
) -> SampleReport {
    let n = truth.len() / sae.d_in.max(1);
    let cos = matching::cosines(&sae.w_dec, truth, sae.d_in);
    let mut m = SampleMetrics::new(sae, matching::best_features(&cos, sae.d_sae, n), n);
    for b in batches {
        m.add(&b);
    }
    m.finish()
}
