//! `--target-l0 K`: λ steered so that the trained SAE lands at L0 ≈ K.
//!
//! An integral controller on log λ: the scheduled λ (`TrainConfig::l1_at`, which starts at
//! `--l1-coefficient`) is multiplied by exp(g), and after λ's warm-up each step adds
//! `gain · (lr_t / lr) · ln((L0_t + 1) / (K + 1))` to g, L0_t being the step's batch L0. Too many
//! active features raise λ, too few lower it; the log makes the correction relative, the +1 keeps
//! it finite at L0 = 0, and the factor lr_t / lr stops the controller when the learning rate
//! decays to 0 (the SAE no longer answers to λ then, so g would only wind up). The gain,
//! min(0.05, 20 / steps), lets λ move by a factor of 10 within the first quarter of any run at
//! an error of ln 1.5. The state g is part of the checkpoint (`TrainerCounters`), so a resumed
//! run steers exactly as the uninterrupted one.

use serde::{Deserialize, Serialize};

/// The controller's state: ln of the factor on the scheduled λ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct L0Control {
    pub log_factor: f64,
}

/// The controller's gain for a run of `steps` steps.
pub fn gain(steps: u64) -> f64 {
    (20.0 / steps.max(1) as f64).min(0.05)
}

impl L0Control {
    /// λ of this step: the scheduled λ times the controller's factor.
    pub fn lambda(&self, scheduled: f32) -> f32 {
        (scheduled as f64 * self.log_factor.exp()) as f32
    }

    /// After a step whose batch had L0 `l0`: moves the factor towards L0 = `target`, at
    /// `gain · lr_frac` (lr_frac = this step's LR over the peak LR).
    pub fn update(&mut self, l0: f64, target: f64, gain: f64, lr_frac: f64) {
        if l0.is_finite() {
            self.log_factor += gain * lr_frac * ((l0 + 1.0) / (target + 1.0)).ln();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steers_a_toy_plant_to_the_target_from_either_side() {
        // A plant whose L0 falls with λ and answers with a lag: L0 relaxes towards 40/λ.
        for start in [0.5f32, 50.0] {
            let (mut c, mut l0) = (L0Control::default(), 40.0 / start as f64);
            for _ in 0..2000 {
                let lam = c.lambda(start) as f64;
                l0 += 0.1 * (40.0 / lam - l0);
                c.update(l0, 8.0, gain(2000), 1.0);
            }
            assert!((l0 - 8.0).abs() < 0.1, "from λ {start}: L0 {l0}");
            assert!((c.lambda(start) - 5.0).abs() < 0.1, "{}", c.lambda(start));
        }
        // No learning rate, no change; L0 = K, no change.
        let mut c = L0Control::default();
        c.update(100.0, 8.0, 0.05, 0.0);
        c.update(8.0, 8.0, 0.05, 1.0);
        assert_eq!(c.log_factor, 0.0);
    }
}
