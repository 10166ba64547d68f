//! Training: batches from the store's shuffled loader → an [`Engine`](super::Engine) step → metrics,
//! evaluations, checkpoints; resumes exactly from the last checkpoint.
//!
//! The library never prints: progress goes to a [`TrainObserver`] (the CLI draws a progress bar).
//!
//! - setup.rs      — the dataset checked, a new run (initial SAE, scaling) or a resumed one
//! - split.rs      — the held-out shards and the line that announces them
//! - trainer.rs    — the loop (steps, log window, schedules, the checkpoint callback)
//! - evaluation.rs — evaluations and their records ([`EvalRecord`])
//! - resample.rs   — resampling dead features (unit-norm recipe)
//! - divergence.rs — when a run counts as diverged, and marking it
//! - export.rs     — the SAELens export at the end of a run
//! - log.rs        — metrics.jsonl ([`LogRecord`])
//! - observer.rs   — progress events ([`TrainObserver`]) and the outcome ([`TrainSummary`])

mod divergence;
mod evaluation;
mod export;
mod log;
mod observer;
pub mod record;
mod resample;
mod setup;
mod split;
mod trainer;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::checkpoint::{self, RunInfo, TrainerState};
use super::config::TrainConfig;
use super::{Result, SaeError};

pub use evaluation::{evaluate, evaluate_observed, evaluation_rows, EvalTotals};
pub use log::LogRecord;
pub use observer::{Silent, TrainObserver, TrainSummary};
pub use record::EvalRecord;
pub use setup::make_engine;

use evaluation::Evaluator;
use trainer::Trainer;

/// Trains an SAE into `dir`. With `resume`, continues the run in `dir` from its last checkpoint
/// (its saved config is used; `cfg` must then be that config). `interrupt` (set by Ctrl-C)
/// makes the loop checkpoint and return [`SaeError::Interrupted`].
pub fn train(
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    observer: &mut dyn TrainObserver,
    interrupt: &AtomicBool,
) -> Result<TrainSummary> {
    let dataset = setup::open_dataset(cfg)?;
    let manifest_sha256 = setup::manifest_sha(&dataset)?;
    let metrics_path = dir.join(checkpoint::METRICS_FILE);
    let (mut info, state) = if resume {
        setup::resume(cfg, dir, manifest_sha256, &metrics_path)?
    } else {
        setup::start(&dataset, cfg, dir, manifest_sha256, &metrics_path)?
    };
    let TrainerState {
        sae,
        adam,
        features,
        counters,
    } = state;
    let engine = make_engine(cfg, &sae, &adam)?;
    info.engine = engine.name();
    info.diverged = None;
    checkpoint::clear_diverged(dir);
    info.save(dir)?;
    observer.note(&split::split_note(&dataset, cfg, &info));
    drop(sae);

    let loader = setup::train_loader(&dataset, cfg, &info, &counters)?;
    let (shards, held_out) = if info.eval_shards.is_empty() {
        (info.train_shards.clone(), false)
    } else {
        (info.eval_shards.clone(), true)
    };
    let evaluator = Evaluator {
        dataset: &dataset,
        cfg,
        shards,
        held_out,
        scale: info.scaling_factor,
        metrics_path: &metrics_path,
    };
    observer.started(cfg.total_steps(), counters.step, cfg.batch, &engine.name());
    let mut trainer = Trainer {
        cfg,
        dir,
        metrics_path: &metrics_path,
        engine,
        features,
        counters,
        loader,
        scale: info.scaling_factor,
    };
    let started = Instant::now();
    trainer.run(&evaluator, &mut info, observer, interrupt)?;
    finish(trainer, &evaluator, &mut info, observer, started)
}

/// The end: evaluation, checkpoint, then the export (or, when the run diverged, the reason and
/// no export), eval.json and the run marked complete.
fn finish(
    mut trainer: Trainer,
    evaluator: &Evaluator,
    info: &mut RunInfo,
    observer: &mut dyn TrainObserver,
    started: Instant,
) -> Result<TrainSummary> {
    let (cfg, dir) = (trainer.cfg, trainer.dir);
    let final_eval = evaluator.run(trainer.engine.as_mut(), &trainer.counters, observer)?;
    trainer.save(observer)?;
    if let Some(reason) = divergence::divergence(&final_eval, cfg) {
        // No export that looks fine: the reason in run.json and DIVERGED, the checkpoints kept.
        divergence::mark(info, dir, &reason)?;
        return Err(SaeError::Diverged(format!(
            "{reason}; no SAE was exported (the checkpoints in {} are kept)",
            dir.join(checkpoint::CHECKPOINTS_DIR).display()
        )));
    }
    export::export(
        trainer.engine.as_mut(),
        evaluator.dataset,
        cfg,
        info,
        &trainer.features,
        &evaluator.shards,
        dir,
    )?;
    let path = dir.join(crate::sae::eval_report::EVAL_FILE);
    let text =
        serde_json::to_string_pretty(&final_eval).map_err(|e| SaeError::Internal(e.to_string()))?;
    crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| SaeError::File {
        path,
        reason: e.to_string(),
    })?;
    info.complete = true;
    info.save(dir)?;
    let counters = &trainer.counters;
    Ok(TrainSummary {
        dir: dir.to_path_buf(),
        steps: counters.step,
        tokens: counters.tokens,
        seconds: started.elapsed().as_secs_f64(),
        final_eval,
        engine: trainer.engine.name(),
        resampled: counters.resampled,
        skipped_rows: counters.skipped_rows,
    })
}
