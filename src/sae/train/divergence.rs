//! Divergence: a run that ends (or steps) into a state no one should use is marked, not
//! exported — the reason in run.json and `DIVERGED`, the checkpoints kept.

use std::path::Path;

use super::record::EvalRecord;
use crate::sae::checkpoint::{self, RunInfo};
use crate::sae::config::TrainConfig;
use crate::sae::Result;

/// Why a finished run counts as diverged, with what to do, or `None`.
pub(super) fn divergence(final_eval: &EvalRecord, cfg: &TrainConfig) -> Option<String> {
    if !final_eval.ev.is_finite() || final_eval.ev < 0.0 {
        Some(format!(
            "explained variance {:.4e} < 0 at the final evaluation (the SAE reconstructs worse than the mean, L0 {:.1}); lower --lr (it was {:e}), or --l1-coefficient (it was {}) if the activations have little sparse structure (random-weight models)",
            final_eval.ev, final_eval.l0, cfg.lr, cfg.l1_coefficient
        ))
    } else if final_eval.tokens > 0 && final_eval.dead_frac >= 1.0 {
        Some(format!(
            "every feature is dead at the final evaluation; lower --lr (it was {:e}) or --l1-coefficient (it was {})",
            cfg.lr, cfg.l1_coefficient
        ))
    } else {
        None
    }
}

/// Records that the run diverged for `reason`: in run.json and the `DIVERGED` marker.
pub(super) fn mark(info: &mut RunInfo, dir: &Path, reason: &str) -> Result<()> {
    info.diverged = Some(reason.to_string());
    info.save(dir)?;
    checkpoint::mark_diverged(dir, reason)
}
