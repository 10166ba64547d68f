//! The loop: batches from the shuffled loader → an [`Engine`] step → the counters and the open
//! logging window; on their schedules a log line, resampling, an evaluation (the
//! [`Evaluator`]) and a checkpoint ([`Trainer::save`]). Like SAELens's trainer, the loop sees a
//! batch iterator, an evaluator and a checkpoint callback, and nothing else of the run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::divergence;
use super::evaluation::Evaluator;
use super::log::{append_metrics, file_len, LogRecord};
use super::observer::TrainObserver;
use super::resample::resample_dead;
use super::source::Batches;
use crate::sae::checkpoint::{self, RunInfo, TrainerCounters, TrainerState};
use crate::sae::config::{Recipe, TrainConfig};
use crate::sae::metrics::{dense_fraction, FeatureTracker};
use crate::sae::step::{Engine, StepStats};
use crate::sae::{Result, SaeError};

/// A run between its setup and its end: the engine (SAE and Adam), the feature tracker, the
/// counters and the loader, which together are what a checkpoint holds.
pub(super) struct Trainer<'a> {
    pub(super) cfg: &'a TrainConfig,
    pub(super) dir: &'a Path,
    pub(super) metrics_path: &'a Path,
    pub(super) engine: Box<dyn Engine>,
    pub(super) features: FeatureTracker,
    pub(super) counters: TrainerCounters,
    pub(super) loader: Batches,
    /// Inputs are multiplied by this before the engine sees them.
    pub(super) scale: f32,
}

/// The open logging window's clock: when it started and the tokens trained by then.
struct WindowClock {
    started: Instant,
    tokens: u64,
}

impl Trainer<'_> {
    /// The checkpoint callback: saves the state as it is now (with the loader's position and
    /// the length of metrics.jsonl) and tells the observer.
    pub(super) fn save(&self, observer: &mut dyn TrainObserver) -> Result<()> {
        let (sae, adam) = self.engine.snapshot()?;
        let mut c = self.counters.clone();
        c.loader = self.loader.state();
        c.metrics_bytes = file_len(self.metrics_path);
        let st = TrainerState {
            sae,
            adam,
            features: self.features.clone(),
            counters: c,
        };
        let path = checkpoint::save_checkpoint(self.dir, &st)?;
        observer.checkpointed(&path);
        Ok(())
    }

    /// Steps until the token budget is reached. `interrupt` makes it checkpoint and return
    /// [`SaeError::Interrupted`]; a non-finite loss marks the run diverged (in `info`).
    pub(super) fn run(
        &mut self,
        evaluator: &Evaluator,
        info: &mut RunInfo,
        observer: &mut dyn TrainObserver,
        interrupt: &AtomicBool,
    ) -> Result<()> {
        let cfg = self.cfg;
        let total = cfg.total_steps();
        let mut clock = WindowClock {
            started: Instant::now(),
            tokens: self.counters.tokens,
        };
        let skipped_before = self.counters.skipped_rows;
        while self.counters.step < total {
            if interrupt.load(Ordering::Relaxed) {
                self.save(observer)?;
                return Err(SaeError::Interrupted);
            }
            let Some((mut x, rows)) = self.loader.next_rows()? else {
                return Err(SaeError::Data("the training loader ended early".into()));
            };
            // Rows holding NaN/Inf were refused, or dropped (--skip-nonfinite), by the reader.
            self.counters.skipped_rows = skipped_before + self.loader.rows_dropped();
            x.iter_mut().for_each(|v| *v *= self.scale);
            let lr = cfg.lr_at(self.counters.step);
            let lam = self
                .counters
                .l0_control
                .lambda(cfg.l1_at(self.counters.step));
            let stats = self.engine.step(&x, rows, lr, lam)?;
            self.steer_l1(lr, stats.l0());
            let loss = stats.mse() + lam as f64 * stats.l1();
            if !loss.is_finite() || !stats.grad_norm.is_finite() {
                let reason = format!(
                    "non-finite loss at step {} (lr {lr}, λ {lam})",
                    self.counters.step
                );
                divergence::mark(info, self.dir, &reason)?;
                return Err(SaeError::Diverged(format!(
                    "{reason}; lower --lr and train again into a new --out (the checkpoints in {} are kept)",
                    self.dir.join(checkpoint::CHECKPOINTS_DIR).display()
                )));
            }
            let tokens_before = self.counters.tokens;
            self.record(&x, rows, &stats);
            let c = &self.counters;
            observer.stepped(c.step, loss, stats.l0(), self.features.dead_fraction());
            if c.step.is_multiple_of(cfg.log_every) || c.step == total {
                self.log(lr, lam, &mut clock, observer)?;
            }
            self.scheduled(tokens_before, total, evaluator, observer)?;
            crash_for_tests(self.counters.step);
        }
        Ok(())
    }

    /// `--target-l0`: moves λ's factor by the step's batch L0 ([`crate::sae::target_l0`]).
    fn steer_l1(&mut self, lr: f32, l0: f64) {
        let cfg = self.cfg;
        if let Some(steering) = crate::sae::target_l0::Steering::of(cfg) {
            let lr_frac = lr as f64 / cfg.lr as f64;
            let step = self.counters.step;
            self.counters.l0_control.steer(&steering, step, l0, lr_frac);
        }
    }

    /// Counts a step of `rows` rows `x` (scaled) into the counters, the feature tracker and the
    /// open logging window.
    fn record(&mut self, x: &[f32], rows: usize, stats: &StepStats) {
        let counters = &mut self.counters;
        counters.step += 1;
        counters.tokens += rows as u64;
        self.features.record(&stats.fired, rows);
        let w = &mut counters.window;
        w.steps += 1;
        w.rows += rows as u64;
        w.l1_sum += stats.l1_sum;
        w.active += stats.active;
        w.grad_norm_sum += stats.grad_norm;
        w.fvu.add(x, self.cfg.d_in, stats.sq_err);
    }

    /// Closes the logging window: one `train` line in metrics.jsonl, told to the observer.
    fn log(
        &mut self,
        lr: f32,
        lam: f32,
        clock: &mut WindowClock,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        let counters = &mut self.counters;
        let w = std::mem::take(&mut counters.window);
        let n = w.rows.max(1) as f64;
        let (mse, l1) = (w.fvu.sq_err / n, w.l1_sum / n);
        let secs = clock.started.elapsed().as_secs_f64().max(1e-9);
        let rec = LogRecord {
            kind: "train",
            step: counters.step,
            tokens: counters.tokens,
            loss: mse + lam as f64 * l1,
            mse,
            l1,
            l0: w.active as f64 / n,
            ev: 1.0 - w.fvu.fvu(),
            lr,
            l1_coefficient: lam,
            grad_norm: w.grad_norm_sum / w.steps.max(1) as f64,
            dead_frac: self.features.dead_fraction(),
            dense_frac: dense_fraction(&self.features.densities()),
            tokens_per_s: (counters.tokens - clock.tokens) as f64 / secs,
        };
        append_metrics(self.metrics_path, &rec)?;
        observer.logged(&rec);
        clock.started = Instant::now();
        clock.tokens = counters.tokens;
        Ok(())
    }

    /// What falls due when the tokens trained pass a multiple of its interval (before the last
    /// step, whose evaluation and checkpoint the end of the run makes): resampling (unit-norm
    /// recipe), an evaluation, a checkpoint, in that order.
    fn scheduled(
        &mut self,
        tokens_before: u64,
        total: u64,
        evaluator: &Evaluator,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        let cfg = self.cfg;
        let (step, tokens) = (self.counters.step, self.counters.tokens);
        let due = |every: u64| crossed(tokens_before, tokens, every) && step < total;
        if cfg.recipe == Recipe::UnitNorm && due(cfg.resample_every) {
            let n = resample_dead(
                self.engine.as_mut(),
                &mut self.features,
                &mut self.loader,
                cfg,
                self.scale,
                step,
            )?;
            self.counters.resampled += n as u64;
            if n > 0 {
                observer.note(&format!("step {step}: resampled {n} dead features"));
            }
        }
        if due(cfg.eval_every) {
            evaluator.run(self.engine.as_mut(), &self.counters, observer)?;
        }
        if due(cfg.checkpoint_every) {
            self.save(observer)?;
        }
        Ok(())
    }
}

/// Whether a counter crossed a multiple of `every` going from `before` to `after`.
fn crossed(before: u64, after: u64, every: u64) -> bool {
    every > 0 && before / every != after / every
}

/// Dies like `kill -9` (no cleanup) after step `UNRAVEL_CRASH_AFTER_STEP`, so tests can check
/// that a crashed run resumes exactly. Unset in normal use.
fn crash_for_tests(step: u64) {
    if let Ok(v) = std::env::var("UNRAVEL_CRASH_AFTER_STEP") {
        if v.parse::<u64>().ok() == Some(step) {
            std::process::abort();
        }
    }
}
