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
//!
//! Steering hard early in a run, while features are still forming, costs features (a λ raised
//! to 2× its fixed value by a tenth of the run kills features that a fixed λ keeps). So by
//! default the target anneals: `--target-l0-anneal A` (default
//! [`crate::sae::config::DEFAULT_TARGET_L0_ANNEAL`]) moves it
//! log-linearly from the L0 of the first steered step to K by fraction A of the run, and
//! `--target-l0-from F` starts the steering only at fraction F.

use serde::{Deserialize, Serialize};

use crate::sae::config::TrainConfig;

/// The controller's state: ln of the factor on the scheduled λ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct L0Control {
    pub log_factor: f64,
    /// The batch L0 of the first steered step: where an annealed target starts.
    #[serde(default)]
    pub start_l0: Option<f64>,
}

/// When the controller acts and what it steers to, from a run's config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steering {
    /// The target L0 K.
    pub target: f64,
    /// The first steered step.
    pub from: u64,
    /// The step from which the target is K (≤ `from`: K throughout).
    pub annealed_at: u64,
    pub gain: f64,
}

impl Steering {
    /// None without `--target-l0`.
    pub fn of(cfg: &TrainConfig) -> Option<Steering> {
        let target = cfg.target_l0?;
        let steps = cfg.total_steps();
        let at = |frac: f64| (frac * steps as f64).round() as u64;
        let from = at(cfg.l1_warmup_frac).max(cfg.target_l0_from.map_or(0, at));
        Some(Steering {
            target,
            from,
            annealed_at: cfg.target_l0_anneal.map_or(0, at),
            gain: gain(steps),
        })
    }

    /// The L0 steered towards at `step` (≥ `from`), the annealed target starting from `start`.
    pub fn target_at(&self, step: u64, start: f64) -> f64 {
        if step >= self.annealed_at || start <= self.target {
            return self.target;
        }
        let t = (step - self.from) as f64 / (self.annealed_at - self.from) as f64;
        let ln = (1.0 - t) * (start + 1.0).ln() + t * (self.target + 1.0).ln();
        ln.exp() - 1.0
    }
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

    /// After step `step`, whose batch had L0 `l0`: moves the factor as `steering` says.
    pub fn steer(&mut self, steering: &Steering, step: u64, l0: f64, lr_frac: f64) {
        if step < steering.from || !l0.is_finite() {
            return;
        }
        let start = *self.start_l0.get_or_insert(l0);
        let target = steering.target_at(step, start);
        self.update(l0, target, steering.gain, lr_frac);
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
    use crate::sae::config::PartialConfig;

    /// An april-2024 run of 100 steps (λ warm-up: 5 steps) steered to L0 20.
    fn steering(from: Option<f64>, anneal: Option<f64>) -> Steering {
        let p = PartialConfig {
            acts: Some("acts".into()),
            hook: Some("h".into()),
            tokens: Some(100 * 4096),
            target_l0: Some(20.0),
            target_l0_from: from,
            target_l0_anneal: anneal,
            ..Default::default()
        };
        Steering::of(&TrainConfig::resolve(p, &[("h".into(), 16)]).unwrap()).unwrap()
    }

    #[test]
    fn steering_starts_after_the_warm_up_or_the_given_fraction() {
        let s = steering(None, Some(0.0));
        assert_eq!(
            (s.from, s.annealed_at, s.target, s.gain),
            (5, 0, 20.0, 0.05)
        );
        assert_eq!(
            steering(None, None).annealed_at,
            75,
            "annealed by 0.75 by default"
        );
        assert_eq!(steering(Some(0.5), None).from, 50);
        assert_eq!(
            steering(Some(0.01), None).from,
            5,
            "never inside λ's warm-up"
        );
        // Not annealed: K from the first steered step, whatever the starting L0.
        assert_eq!(s.target_at(5, 140.0), 20.0);
    }

    #[test]
    fn an_annealed_target_moves_log_linearly_from_the_first_l0_to_k() {
        let s = steering(None, Some(0.75));
        assert_eq!((s.from, s.annealed_at), (5, 75));
        assert!((s.target_at(5, 146.0) - 146.0).abs() < 1e-9);
        // Halfway (step 40), the geometric mean of 147 and 21, less 1.
        assert!((s.target_at(40, 146.0) - ((147.0f64 * 21.0).sqrt() - 1.0)).abs() < 1e-9);
        assert_eq!(s.target_at(75, 146.0), 20.0);
        assert_eq!(s.target_at(99, 146.0), 20.0);
        // Starting at or below K there is nothing to anneal.
        assert_eq!(s.target_at(40, 12.0), 20.0);
    }

    #[test]
    fn the_controller_records_its_start_and_waits_for_its_first_step() {
        let s = steering(Some(0.5), Some(0.75));
        let mut c = L0Control::default();
        c.steer(&s, 49, 100.0, 1.0);
        assert_eq!(
            c,
            L0Control::default(),
            "before --target-l0-from nothing moves"
        );
        c.steer(&s, 50, f64::NAN, 1.0);
        assert_eq!(c, L0Control::default(), "a non-finite L0 is not a start");
        c.steer(&s, 50, 100.0, 1.0);
        // At its first step the annealed target is the L0 itself: no correction yet.
        assert_eq!(c.start_l0, Some(100.0));
        assert!(c.log_factor.abs() < 1e-12);
        c.steer(&s, 75, 100.0, 1.0);
        assert!((c.log_factor - 0.05 * (101.0f64 / 21.0).ln()).abs() < 1e-12);
    }

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
