//! Divergence: a run that ends (or steps) into a state no one should use is marked, not
//! exported — the reason in run.json and `DIVERGED`, the checkpoints kept.

use std::path::Path;

use super::record::EvalRecord;
use crate::sae::checkpoint::{self, RunInfo};
use crate::sae::config::TrainConfig;
use crate::sae::Result;

/// Why a finished run counts as diverged, with what to do, or `None`. `l1_factor` is the
/// `--target-l0` controller's factor on λ at the end (1 without it).
pub(super) fn divergence(
    final_eval: &EvalRecord,
    cfg: &TrainConfig,
    l1_factor: f64,
) -> Option<String> {
    let l1 = l1_advice(cfg, l1_factor);
    if !final_eval.ev.is_finite() || final_eval.ev < 0.0 {
        Some(format!(
            "explained variance {:.4e} < 0 at the final evaluation (the SAE reconstructs worse than the mean, L0 {:.1}); lower --lr (it was {:e}), or {l1} if the activations have little sparse structure (random-weight models)",
            final_eval.ev, final_eval.l0, cfg.lr
        ))
    } else if final_eval.tokens > 0 && final_eval.dead_frac >= 1.0 {
        Some(format!(
            "every feature is dead at the final evaluation; lower --lr (it was {:e}) or {l1}",
            cfg.lr
        ))
    } else {
        None
    }
}

/// What to lower to weaken the L1 penalty: `--l1-coefficient`, or under `--target-l0` (which
/// steers λ away from the coefficient) the target, naming the λ the controller reached.
fn l1_advice(cfg: &TrainConfig, l1_factor: f64) -> String {
    match cfg.target_l0 {
        None => format!("--l1-coefficient (it was {})", cfg.l1_coefficient),
        Some(k) => format!(
            "raise --target-l0 (it was {k}; it steered λ from {} to {:.4e})",
            cfg.l1_coefficient,
            cfg.l1_coefficient as f64 * l1_factor
        ),
    }
}

/// Records that the run diverged for `reason`: in run.json and the `DIVERGED` marker.
pub(super) fn mark(info: &mut RunInfo, dir: &Path, reason: &str) -> Result<()> {
    info.diverged = Some(reason.to_string());
    info.save(dir)?;
    checkpoint::mark_diverged(dir, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::config::PartialConfig;

    fn config(target_l0: Option<f64>) -> TrainConfig {
        let p = PartialConfig {
            acts: Some("acts".into()),
            hook: Some("h".into()),
            tokens: Some(4096),
            l1_coefficient: Some(5.0),
            target_l0,
            ..Default::default()
        };
        TrainConfig::resolve(p, &[("h".into(), 16)]).unwrap()
    }

    fn dead() -> EvalRecord {
        EvalRecord {
            kind: "final",
            step: 1,
            tokens_trained: 4096,
            tokens: 100,
            mse: 1.0,
            fvu: 0.5,
            ev: 0.5,
            l0: 0.0,
            l1: 0.0,
            dead_frac: 1.0,
            dense_frac: 0.0,
            log_density_histogram: vec![],
            held_out: true,
        }
    }

    #[test]
    fn the_advice_names_the_flag_that_set_lambda() {
        let plain = divergence(&dead(), &config(None), 1.0).unwrap();
        assert!(plain.ends_with("or --l1-coefficient (it was 5)"), "{plain}");
        let steered = divergence(&dead(), &config(Some(25.0)), 8.0).unwrap();
        assert!(
            steered.ends_with("or raise --target-l0 (it was 25; it steered λ from 5 to 4.0000e1)"),
            "{steered}"
        );
        let mut fine = dead();
        fine.dead_frac = 0.5;
        assert_eq!(divergence(&fine, &config(None), 1.0), None);
    }
}
