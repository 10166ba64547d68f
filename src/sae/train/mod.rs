//! Training: batches from the store's shuffled loader → an [`Engine`](super::Engine) step → metrics,
//! evaluations, checkpoints; resumes exactly from the last checkpoint.
//!
//! The library never prints: progress goes to a [`TrainObserver`] (the CLI draws a progress bar).
//!
//! - source.rs     — where rows come from: the dataset's loader, or a generator streamed by index
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
mod source;
mod split;
mod trainer;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint::{self, RunInfo, TrainerState};
use super::config::TrainConfig;
use super::{Result, SaeError};

pub use evaluation::{evaluate, evaluate_observed, evaluation_rows, EvalTotals};
pub use log::LogRecord;
pub use observer::{Silent, TrainObserver, TrainSummary};
pub use record::EvalRecord;
pub use setup::make_engine;
pub use source::{RowSource, HELD_OUT_START};

use evaluation::Evaluator;
use source::Input;
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
    let input = Input::Store(setup::open_dataset(cfg)?);
    run(input, cfg, dir, resume, observer, interrupt)
}

/// [`train`] on rows streamed from a generator (`unravel train --synth`) instead of a dataset:
/// training reads rows 0, 1, 2, ... and evaluations the held-out range from
/// [`HELD_OUT_START`]; a resumed run continues from the checkpoint's row index.
pub fn train_streamed(
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    source: Arc<dyn RowSource>,
    observer: &mut dyn TrainObserver,
    interrupt: &AtomicBool,
) -> Result<TrainSummary> {
    setup::check_stream(cfg, source.as_ref())?;
    run(Input::Stream(source), cfg, dir, resume, observer, interrupt)
}

/// The run on its input, set up new or resumed.
fn run(
    input: Input,
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    observer: &mut dyn TrainObserver,
    interrupt: &AtomicBool,
) -> Result<TrainSummary> {
    let manifest_sha256 = setup::input_sha(&input)?;
    let metrics_path = dir.join(checkpoint::METRICS_FILE);
    let (mut info, state) = if resume {
        setup::resume(cfg, dir, manifest_sha256, &metrics_path)?
    } else {
        setup::start(&input, cfg, dir, manifest_sha256, &metrics_path)?
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
    observer.note(&split::split_note(&input, cfg, &info));
    drop(sae);

    let loader = setup::train_loader(&input, cfg, &info, &counters)?;
    let (shards, held_out) = match &input {
        Input::Stream(_) => (vec![], true),
        Input::Store(_) if info.eval_shards.is_empty() => (info.train_shards.clone(), false),
        Input::Store(_) => (info.eval_shards.clone(), true),
    };
    let evaluator = Evaluator {
        input: &input,
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
    if let Some(reason) = divergence::divergence(
        &final_eval,
        cfg,
        trainer.counters.l0_control.log_factor.exp(),
    ) {
        // No export that looks fine: the reason in run.json and DIVERGED, the checkpoints kept.
        divergence::mark(info, dir, &reason)?;
        return Err(SaeError::Diverged(format!(
            "{reason}; no SAE was exported (the checkpoints in {} are kept)",
            dir.join(checkpoint::CHECKPOINTS_DIR).display()
        )));
    }
    export::export(
        trainer.engine.as_mut(),
        evaluator.input,
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
