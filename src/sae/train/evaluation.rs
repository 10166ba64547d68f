//! Evaluations: an engine's reconstruction of a fixed set of rows (held-out shards, training
//! shards when nothing is held out, or a stream's held-out index range), summed into an
//! [`EvalRecord`].

use std::path::Path;

use super::log::append_metrics;
use super::observer::TrainObserver;
use super::setup::ordered_loader;
use super::source::{held_out_batches, Input, RowSource};
use super::split::usable_rows;
use crate::sae::checkpoint::TrainerCounters;
use crate::sae::config::TrainConfig;
use crate::sae::metrics::{dense_fraction, log_density_histogram, FvuAccumulator};
use crate::sae::step::Engine;
use crate::sae::Result;
use crate::store::Dataset;

use super::record::EvalRecord;

/// Evaluates `engine` on up to `max_tokens` rows of `shards` (raw activations, scaled by `scale`
/// before the engine sees them).
pub fn evaluate(
    engine: &mut dyn Engine,
    dataset: &Dataset,
    cfg: &TrainConfig,
    shards: &[usize],
    scale: f32,
    max_tokens: u64,
) -> Result<(FvuAccumulator, EvalTotals)> {
    evaluate_observed(engine, dataset, cfg, shards, scale, max_tokens, &mut |_| {})
}

/// Rows an evaluation of up to `max_tokens` rows of `shards` reads (for a progress bar).
pub fn evaluation_rows(
    dataset: &Dataset,
    cfg: &TrainConfig,
    shards: &[usize],
    max_tokens: u64,
) -> u64 {
    let all = &dataset.manifest().shards;
    let rows: u64 = shards
        .iter()
        .filter_map(|&i| all.get(i))
        .map(|s| usable_rows(s, cfg))
        .sum();
    rows.min(max_tokens)
}

/// [`evaluate`], calling `progress` with the rows evaluated so far after each batch.
pub fn evaluate_observed(
    engine: &mut dyn Engine,
    dataset: &Dataset,
    cfg: &TrainConfig,
    shards: &[usize],
    scale: f32,
    max_tokens: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(FvuAccumulator, EvalTotals)> {
    let batch = cfg.batch.min(4096);
    let mut loader = ordered_loader(dataset, cfg, shards, batch)?;
    let (mut acc, mut totals) = EvalTotals::start(cfg);
    while acc.tokens < max_tokens {
        let Some((mut x, rows)) = loader.next_rows()? else {
            break;
        };
        let rows = rows.min((max_tokens - acc.tokens) as usize);
        x.truncate(rows * cfg.d_in);
        // Rows holding NaN/Inf were refused, or dropped (--skip-nonfinite), by the reader.
        if rows == 0 {
            continue;
        }
        totals.add(engine, cfg, scale, &x, rows, &mut acc)?;
        progress(acc.tokens);
    }
    Ok((acc, totals))
}

/// [`evaluate`] on `max_tokens` held-out rows of a streamed generator.
fn evaluate_stream(
    engine: &mut dyn Engine,
    source: &dyn RowSource,
    cfg: &TrainConfig,
    scale: f32,
    max_tokens: u64,
) -> Result<(FvuAccumulator, EvalTotals)> {
    let (mut acc, mut totals) = EvalTotals::start(cfg);
    held_out_batches(source, max_tokens, cfg.batch.min(4096), &mut |x, rows| {
        totals.add(engine, cfg, scale, &x, rows, &mut acc)
    })?;
    Ok((acc, totals))
}

/// Sums of an evaluation besides FVU.
#[derive(Debug, Clone, Default)]
pub struct EvalTotals {
    pub l1_sum: f64,
    pub active: u64,
    pub fired: Vec<u64>,
}

impl EvalTotals {
    /// Empty sums for an evaluation of `cfg`'s SAE.
    fn start(cfg: &TrainConfig) -> (FvuAccumulator, EvalTotals) {
        let totals = EvalTotals {
            fired: vec![0; cfg.d_sae],
            ..Default::default()
        };
        (FvuAccumulator::default(), totals)
    }

    /// Adds the engine's reconstruction of `rows` raw rows `x` (scaled by `scale` first).
    fn add(
        &mut self,
        engine: &mut dyn Engine,
        cfg: &TrainConfig,
        scale: f32,
        x: &[f32],
        rows: usize,
        acc: &mut FvuAccumulator,
    ) -> Result<()> {
        let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
        let r = engine.reconstruct(&xs, rows)?;
        // FVU in raw units: the error scales by 1/s².
        acc.add(x, cfg.d_in, r.stats.sq_err / (scale as f64 * scale as f64));
        self.l1_sum += r.stats.l1_sum;
        self.active += r.stats.active;
        for (a, b) in self.fired.iter_mut().zip(&r.stats.fired) {
            *a += *b as u64;
        }
        Ok(())
    }

    /// The record of an evaluation.
    pub fn record(
        &self,
        acc: &FvuAccumulator,
        step: u64,
        tokens_trained: u64,
        held_out: bool,
    ) -> EvalRecord {
        let n = acc.tokens.max(1) as f64;
        let dens: Vec<f64> = self.fired.iter().map(|&c| c as f64 / n).collect();
        let fvu = acc.fvu();
        EvalRecord {
            kind: "eval",
            step,
            tokens_trained,
            tokens: acc.tokens,
            mse: acc.sq_err / n,
            fvu,
            ev: 1.0 - fvu,
            l0: self.active as f64 / n,
            l1: self.l1_sum / n,
            dead_frac: self.fired.iter().filter(|&&c| c == 0).count() as f64
                / self.fired.len().max(1) as f64,
            dense_frac: dense_fraction(&dens),
            log_density_histogram: log_density_histogram(&dens),
            held_out,
        }
    }
}

/// The run's evaluator: the evaluation set, appending each record to metrics.jsonl and telling
/// the observer.
pub(super) struct Evaluator<'a> {
    pub(super) input: &'a Input,
    pub(super) cfg: &'a TrainConfig,
    /// Shards evaluated: the held-out ones, or the training shards when none is held out (none
    /// for a stream, which evaluates on its held-out index range).
    pub(super) shards: Vec<usize>,
    pub(super) held_out: bool,
    pub(super) scale: f32,
    pub(super) metrics_path: &'a Path,
}

impl Evaluator<'_> {
    /// An evaluation at the trainer's current step, appended to metrics.jsonl and reported.
    pub(super) fn run(
        &self,
        engine: &mut dyn Engine,
        counters: &TrainerCounters,
        observer: &mut dyn TrainObserver,
    ) -> Result<EvalRecord> {
        let cfg = self.cfg;
        let (acc, totals) = match self.input {
            Input::Store(dataset) => evaluate(
                engine,
                dataset,
                cfg,
                &self.shards,
                self.scale,
                cfg.eval_tokens,
            )?,
            Input::Stream(source) => {
                evaluate_stream(engine, source.as_ref(), cfg, self.scale, cfg.eval_tokens)?
            }
        };
        let rec = totals.record(&acc, counters.step, counters.tokens, self.held_out);
        append_metrics(self.metrics_path, &rec)?;
        observer.evaluated(&rec);
        Ok(rec)
    }
}
