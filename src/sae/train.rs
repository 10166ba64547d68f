//! The training loop: batches from the store's shuffled loader → an [`Engine`] step → metrics,
//! evaluations, checkpoints; resumes exactly from the last checkpoint.
//!
//! The library never prints: progress goes to a [`TrainObserver`] (the CLI draws a progress bar).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, ExportMeta, LogWindow, RunInfo, TrainerCounters, TrainerState};
use super::config::{EngineChoice, Recipe, TrainConfig};
use super::fast::FastEngine;
use super::metrics::{dense_fraction, log_density_histogram, FeatureTracker, FvuAccumulator};
use super::model::{geometric_median, Sae};
use super::optim::AdamState;
use super::plain::PlainEngine;
use super::step::Engine;
use super::{Result, SaeError};
use crate::store::{Dataset, Loader, LoaderConfig, LoaderMode};

/// One `metrics.jsonl` line of training.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    pub kind: &'static str,
    pub step: u64,
    pub tokens: u64,
    pub loss: f64,
    pub mse: f64,
    pub l1: f64,
    pub l0: f64,
    /// Explained variance over the tokens of this logging window.
    pub ev: f64,
    pub lr: f32,
    pub l1_coefficient: f32,
    pub grad_norm: f64,
    pub dead_frac: f64,
    pub dense_frac: f64,
    pub tokens_per_s: f64,
}

/// An evaluation over a fixed set of tokens (written to
/// [`EVAL_FILE`](super::eval_report::EVAL_FILE) at the end of training).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Not read back (a `&'static str`): empty in a record read from a file.
    #[serde(skip_deserializing)]
    pub kind: &'static str,
    pub step: u64,
    pub tokens_trained: u64,
    /// Tokens evaluated.
    pub tokens: u64,
    /// Mean over tokens of ‖x − x̂‖² in the raw (unscaled) activation space.
    pub mse: f64,
    pub fvu: f64,
    pub ev: f64,
    pub l0: f64,
    /// Mean L1 term (training space, as in the loss).
    pub l1: f64,
    /// Features that never fired on the evaluated tokens.
    pub dead_frac: f64,
    pub dense_frac: f64,
    /// log10(density + 1e-10) histogram: (lower edge, features), 0.5-wide bins.
    pub log_density_histogram: Vec<(f64, u64)>,
    pub held_out: bool,
}

/// Receives progress; every method has a do-nothing default.
pub trait TrainObserver {
    fn started(&mut self, _total_steps: u64, _done_steps: u64, _batch: usize, _engine: &str) {}
    fn stepped(&mut self, _step: u64, _loss: f64, _l0: f64, _dead_frac: f64) {}
    fn logged(&mut self, _r: &LogRecord) {}
    fn evaluated(&mut self, _r: &EvalRecord) {}
    fn checkpointed(&mut self, _dir: &Path) {}
    fn note(&mut self, _msg: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl TrainObserver for Silent {}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub dir: PathBuf,
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub final_eval: EvalRecord,
    pub engine: String,
    /// Dead features resampled (unit-norm recipe).
    pub resampled: u64,
    /// Rows dropped for NaN/Inf values (--skip-nonfinite).
    pub skipped_rows: u64,
}

/// Picks the engine for the configured device.
pub fn make_engine(cfg: &TrainConfig, sae: &Sae, adam: &AdamState) -> Result<Box<dyn Engine>> {
    let device =
        crate::device::parse_device(&cfg.device).map_err(|e| SaeError::Config(e.to_string()))?;
    let step = cfg.step_config();
    let fast_ok = device.is_cpu();
    match cfg.engine {
        EngineChoice::Fast if !fast_ok => Err(SaeError::Config(format!(
            "engine = \"fast\" runs on the CPU only; --device {} needs engine = \"plain\" (or auto)",
            cfg.device
        ))),
        EngineChoice::Fast | EngineChoice::Auto if fast_ok => {
            Ok(Box::new(FastEngine::new(sae.clone(), adam.clone(), step)))
        }
        _ => Ok(Box::new(PlainEngine::new(sae, adam, step, &device, candle_core::DType::F32)?)),
    }
}

/// sha256 of a dataset's manifest.json.
fn manifest_sha(dataset: &Dataset) -> Result<String> {
    use sha2::{Digest, Sha256};
    let path = dataset.dir().join(crate::store::MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| SaeError::File {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Rows of a shard that the run reads (special-token rows are skipped unless included).
fn usable_rows(s: &crate::store::ShardInfo, cfg: &TrainConfig) -> u64 {
    if cfg.include_special {
        s.rows
    } else {
        s.rows - s.special_rows
    }
}

/// Largest share of the rows held out beyond the `--eval-shards` asked for.
const MAX_HELD_OUT_SHARE: f64 = 0.1;

/// How many trailing shards to hold out: `eval_shards`, plus more while they hold fewer than
/// `eval_tokens` rows (a dataset's last shard is often a small remainder) and one more still
/// holds out at most a tenth of the rows.
fn held_out_count(dataset: &Dataset, cfg: &TrainConfig) -> usize {
    let shards = &dataset.manifest().shards;
    let n = shards.len();
    let total: u64 = shards.iter().map(|s| usable_rows(s, cfg)).sum();
    let tail = |k: usize| -> u64 { shards[n - k..].iter().map(|s| usable_rows(s, cfg)).sum() };
    let mut k = cfg.eval_shards;
    while k + 1 < n
        && tail(k) < cfg.eval_tokens
        && tail(k + 1) as f64 <= MAX_HELD_OUT_SHARE * total as f64
    {
        k += 1;
    }
    k
}

/// The line said before training: the training set's size and the held-out set's, with a
/// warning when the held-out set is more than a tenth of the data or smaller than asked.
fn split_note(dataset: &Dataset, cfg: &TrainConfig, info: &RunInfo) -> String {
    let shards = &dataset.manifest().shards;
    let rows = |set: &[usize]| -> u64 {
        set.iter()
            .filter_map(|&i| shards.get(i))
            .map(|s| usable_rows(s, cfg))
            .sum()
    };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let (train, eval) = (rows(&info.train_shards), rows(&info.eval_shards));
    let mut note = format!(
        "training set: {train} rows in {} shard{}",
        info.train_shards.len(),
        plural(info.train_shards.len())
    );
    if info.eval_shards.is_empty() {
        note.push_str(if cfg.eval_shards == 0 {
            "; evaluations use training rows (--eval-shards 0)"
        } else {
            "; the dataset has one shard, so nothing is held out: evaluations use training rows \
             (write more shards with --shard-tokens to hold some out)"
        });
        return note;
    }
    let share = eval as f64 / (train + eval).max(1) as f64;
    note.push_str(&format!(
        "; held out for evaluation: {eval} rows in {} shard{} ({:.1}% of the data)",
        info.eval_shards.len(),
        plural(info.eval_shards.len()),
        share * 100.0
    ));
    if share > MAX_HELD_OUT_SHARE {
        note.push_str(
            " — more than a tenth of the data; --eval-shards 0 evaluates on training rows instead",
        );
    } else if eval < cfg.eval_tokens {
        note.push_str(&format!(
            "; evaluations use all {eval}, fewer than --eval-tokens {}",
            cfg.eval_tokens
        ));
    }
    note
}

/// Why a finished run counts as diverged, with what to do, or `None`.
fn divergence(final_eval: &EvalRecord, cfg: &TrainConfig) -> Option<String> {
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

/// A single-pass loader over `shards`.
fn ordered_loader(
    dataset: &Dataset,
    cfg: &TrainConfig,
    shards: &[usize],
    batch: usize,
) -> Result<Loader> {
    let mut lc = LoaderConfig::new(&cfg.hook, batch);
    lc.shards = Some(shards.to_vec());
    lc.mode = LoaderMode::SinglePass;
    lc.include_special = cfg.include_special;
    Ok(Loader::new(dataset, &lc, &candle_core::Device::Cpu)?)
}

/// Up to `tokens` rows of `shards` in file order.
fn sample_rows(
    dataset: &Dataset,
    cfg: &TrainConfig,
    shards: &[usize],
    tokens: u64,
) -> Result<Vec<f32>> {
    let mut loader = ordered_loader(dataset, cfg, shards, 4096)?;
    let mut out = vec![];
    let mut n = 0u64;
    while n < tokens {
        let Some((x, rows)) = loader.next_rows()? else {
            break;
        };
        let take = (rows as u64).min(tokens - n) as usize;
        out.extend_from_slice(&x[..take * cfg.d_in]);
        n += take as u64;
    }
    Ok(out)
}

/// `√d / E‖x‖` over finite rows of the sample.
fn scaling_factor(sample: &[f32], d: usize) -> Result<f32> {
    let norms: Vec<f64> = sample
        .chunks(d)
        .filter(|r| r.iter().all(|v| v.is_finite()))
        .map(|r| {
            r.iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mean = norms.iter().sum::<f64>() / norms.len().max(1) as f64;
    if !(mean > 0.0 && mean.is_finite()) {
        return Err(SaeError::Data(
            "the activations have zero mean norm: nothing to train on".into(),
        ));
    }
    Ok(((d as f64).sqrt() / mean) as f32)
}

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
    let d = cfg.d_in;
    let mut acc = FvuAccumulator::default();
    let mut totals = EvalTotals {
        fired: vec![0; cfg.d_sae],
        ..Default::default()
    };
    while acc.tokens < max_tokens {
        let Some((mut x, rows)) = loader.next_rows()? else {
            break;
        };
        let rows = rows.min((max_tokens - acc.tokens) as usize);
        x.truncate(rows * d);
        // Rows holding NaN/Inf were refused, or dropped (--skip-nonfinite), by the reader.
        if rows == 0 {
            continue;
        }
        let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
        let r = engine.reconstruct(&xs, rows)?;
        // FVU in raw units: the error scales by 1/s².
        acc.add(&x, d, r.stats.sq_err / (scale as f64 * scale as f64));
        totals.l1_sum += r.stats.l1_sum;
        totals.active += r.stats.active;
        for (a, b) in totals.fired.iter_mut().zip(&r.stats.fired) {
            *a += *b as u64;
        }
        progress(acc.tokens);
    }
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

/// Appends one JSON line to metrics.jsonl.
fn append_metrics(path: &Path, value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| SaeError::Internal(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SaeError::File {
            path: path.into(),
            reason: e.to_string(),
        })?;
    writeln!(f, "{line}").map_err(|e| SaeError::File {
        path: path.into(),
        reason: e.to_string(),
    })
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Whether a counter crossed a multiple of `every` going from `before` to `after`.
fn crossed(before: u64, after: u64, every: u64) -> bool {
    every > 0 && before / every != after / every
}

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
    let dataset = Dataset::open_with(&cfg.acts, cfg.read_options())?;
    let hook = dataset.hook(&cfg.hook)?.clone();
    if hook.d != cfg.d_in {
        return Err(SaeError::Config(format!(
            "hook {} has d = {} in {}, but the SAE has d_in = {}",
            cfg.hook,
            hook.d,
            cfg.acts.display(),
            cfg.d_in
        )));
    }
    // Refused before the run folder or any weight exists.
    crate::memory::check_fits(
        &format!(
            "an SAE of {} → {} features (batch {})",
            cfg.d_in, cfg.d_sae, cfg.batch
        ),
        cfg.memory_bytes(),
        "lower --d-sae (or --expansion) or --batch",
    )
    .map_err(SaeError::Config)?;
    let manifest_sha256 = manifest_sha(&dataset)?;
    let d = cfg.d_in;
    let metrics_path = dir.join(checkpoint::METRICS_FILE);

    let (info, state) = if resume {
        let info = RunInfo::load(dir)?;
        if info.manifest_sha256 != manifest_sha256 {
            return Err(SaeError::Config(format!(
                "{} changed since this run started (manifest sha256 {} → {}); resume with the original dataset",
                cfg.acts.display(), info.manifest_sha256.get(..12).unwrap_or(&info.manifest_sha256), manifest_sha256.get(..12).unwrap_or(&manifest_sha256)
            )));
        }
        let state = checkpoint::load_checkpoint(dir)?;
        if (state.sae.d_in, state.sae.d_sae) != (cfg.d_in, cfg.d_sae) {
            return Err(SaeError::Config(format!(
                "{}: the checkpoint holds a {}→{} SAE but config.toml says {}→{}; restore the run's config.toml",
                dir.display(), state.sae.d_in, state.sae.d_sae, cfg.d_in, cfg.d_sae
            )));
        }
        // Drop metric lines written after the checkpoint.
        if file_len(&metrics_path) > state.counters.metrics_bytes {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&metrics_path)
                .map_err(|e| SaeError::File {
                    path: metrics_path.clone(),
                    reason: e.to_string(),
                })?;
            f.set_len(state.counters.metrics_bytes)
                .map_err(|e| SaeError::File {
                    path: metrics_path.clone(),
                    reason: e.to_string(),
                })?;
        }
        (info, state)
    } else {
        if checkpoint::has_checkpoint(dir) {
            return Err(SaeError::Config(format!(
                "{} already holds a run; continue it with --resume {}, or choose another --out",
                dir.display(),
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| SaeError::File {
            path: dir.into(),
            reason: e.to_string(),
        })?;
        // A one-shard dataset (a small extract) has nothing to hold out: it trains and evaluates
        // on its one shard, and the split note says so.
        let (train_shards, eval_shards) = if cfg.eval_shards == 0 || dataset.shard_count() == 1 {
            ((0..dataset.shard_count()).collect(), vec![])
        } else if cfg.eval_shards >= dataset.shard_count() {
            return Err(SaeError::Config(format!(
                "{} has {} shard(s): cannot hold out {} for evaluation; pass --eval-shards 0 to evaluate on training data",
                cfg.acts.display(), dataset.shard_count(), cfg.eval_shards
            )));
        } else {
            dataset.split(held_out_count(&dataset, cfg))?
        };
        let sample = sample_rows(&dataset, cfg, &train_shards, cfg.scale_tokens)?;
        if sample.is_empty() {
            return Err(SaeError::Data(format!(
                "{}: hook {} has no rows to train on",
                cfg.acts.display(),
                cfg.hook
            )));
        }
        let (sae, scaling_factor) = match &cfg.from {
            Some(from) => {
                let folder = checkpoint::locate_saelens(from, &crate::hub::HubOptions::default())?;
                let loaded = checkpoint::load_saelens(&folder)?;
                if loaded.sae.d_in != d || loaded.sae.d_sae != cfg.d_sae {
                    return Err(SaeError::Config(format!(
                        "--from {from}: the SAE is {}→{}, the run wants {}→{}",
                        loaded.sae.d_in, loaded.sae.d_sae, d, cfg.d_sae
                    )));
                }
                let s = scaling_factor(&sample, d)?;
                (loaded.sae.unfold_scaling(s), s)
            }
            None => {
                let s = scaling_factor(&sample, d)?;
                let sae = match cfg.recipe {
                    Recipe::April2024 => Sae::init_april(d, cfg.d_sae, cfg.dec_init_norm, cfg.seed),
                    Recipe::UnitNorm => {
                        let scaled: Vec<f32> = sample
                            .chunks(d)
                            .filter(|r| r.iter().all(|v| v.is_finite()))
                            .flatten()
                            .map(|v| v * s)
                            .collect();
                        let median = geometric_median(&scaled, d, 100, 1e-6);
                        Sae::init_unit_norm(d, cfg.d_sae, median, cfg.seed)
                    }
                };
                (sae, s)
            }
        };
        let m = dataset.manifest();
        let info = RunInfo {
            manifest_sha256,
            model_name: m.model.id.clone(),
            context_size: m.ctx,
            prepend_bos: !matches!(m.bos, crate::store::Bos::None),
            scaling_factor,
            train_shards,
            eval_shards,
            complete: false,
            engine: String::new(),
            diverged: None,
        };
        checkpoint::save_config(cfg, dir)?;
        let lens = [
            sae.w_enc.len(),
            sae.b_enc.len(),
            sae.w_dec.len(),
            sae.b_dec.len(),
        ];
        let _ = std::fs::remove_file(&metrics_path);
        let state = TrainerState {
            adam: AdamState::zeros(lens),
            features: FeatureTracker::new(cfg.d_sae, cfg.dead_window),
            counters: TrainerCounters {
                step: 0,
                tokens: 0,
                loader: crate::store::LoaderState {
                    epoch: 0,
                    window: 0,
                    offset: 0,
                    rows_emitted: 0,
                    fingerprint: String::new(),
                },
                metrics_bytes: 0,
                window: LogWindow::default(),
                skipped_rows: 0,
                resampled: 0,
            },
            sae,
        };
        (info, state)
    };
    let TrainerState {
        sae,
        adam,
        mut features,
        mut counters,
    } = state;
    let mut engine = make_engine(cfg, &sae, &adam)?;
    let mut info = info;
    info.engine = engine.name();
    info.diverged = None;
    checkpoint::clear_diverged(dir);
    info.save(dir)?;
    observer.note(&split_note(&dataset, cfg, &info));
    drop(sae);

    let mut lc = LoaderConfig::new(&cfg.hook, cfg.batch);
    lc.shards = Some(info.train_shards.clone());
    lc.seed = cfg.seed;
    lc.shuffle_buffer = cfg.shuffle_buffer;
    lc.include_special = cfg.include_special;
    let cpu = candle_core::Device::Cpu;
    let mut loader = if counters.step > 0 {
        Loader::resume(&dataset, &lc, &cpu, &counters.loader)?
    } else {
        Loader::new(&dataset, &lc, &cpu)?
    };
    let (eval_set, held_out) = if info.eval_shards.is_empty() {
        (info.train_shards.clone(), false)
    } else {
        (info.eval_shards.clone(), true)
    };
    let scale = info.scaling_factor;
    let total = cfg.total_steps();
    observer.started(total, counters.step, cfg.batch, &engine.name());

    let save = |engine: &dyn Engine,
                features: &FeatureTracker,
                counters: &TrainerCounters,
                loader: &Loader,
                observer: &mut dyn TrainObserver|
     -> Result<()> {
        let (sae, adam) = engine.snapshot()?;
        let mut c = counters.clone();
        c.loader = loader.state();
        c.metrics_bytes = file_len(&metrics_path);
        let st = TrainerState {
            sae,
            adam,
            features: features.clone(),
            counters: c,
        };
        let path = checkpoint::save_checkpoint(dir, &st)?;
        observer.checkpointed(&path);
        Ok(())
    };

    // A held-out evaluation, appended to metrics.jsonl and reported.
    let run_eval = |engine: &mut dyn Engine,
                    counters: &TrainerCounters,
                    observer: &mut dyn TrainObserver|
     -> Result<EvalRecord> {
        let (acc, totals) = evaluate(engine, &dataset, cfg, &eval_set, scale, cfg.eval_tokens)?;
        let rec = totals.record(&acc, counters.step, counters.tokens, held_out);
        append_metrics(&metrics_path, &rec)?;
        observer.evaluated(&rec);
        Ok(rec)
    };

    let started = Instant::now();
    let mut window_started = Instant::now();
    let mut window_tokens_at_start = counters.tokens;
    let skipped_before = counters.skipped_rows;
    while counters.step < total {
        if interrupt.load(Ordering::Relaxed) {
            save(engine.as_ref(), &features, &counters, &loader, observer)?;
            return Err(SaeError::Interrupted);
        }
        let Some((mut x, rows)) = loader.next_rows()? else {
            return Err(SaeError::Data("the training loader ended early".into()));
        };
        // Rows holding NaN/Inf were refused, or dropped (--skip-nonfinite), by the reader.
        counters.skipped_rows = skipped_before + loader.rows_dropped();
        x.iter_mut().for_each(|v| *v *= scale);
        let lr = cfg.lr_at(counters.step);
        let lam = cfg.l1_at(counters.step);
        let stats = engine.step(&x, rows, lr, lam)?;
        let loss = stats.mse() + lam as f64 * stats.l1();
        if !loss.is_finite() || !stats.grad_norm.is_finite() {
            let reason = format!(
                "non-finite loss at step {} (lr {lr}, λ {lam})",
                counters.step
            );
            info.diverged = Some(reason.clone());
            info.save(dir)?;
            checkpoint::mark_diverged(dir, &reason)?;
            return Err(SaeError::Diverged(format!(
                "{reason}; lower --lr and train again into a new --out (the checkpoints in {} are kept)",
                dir.join(checkpoint::CHECKPOINTS_DIR).display()
            )));
        }
        let tokens_before = counters.tokens;
        counters.step += 1;
        counters.tokens += rows as u64;
        features.record(&stats.fired, rows);
        let w = &mut counters.window;
        w.steps += 1;
        w.rows += rows as u64;
        w.l1_sum += stats.l1_sum;
        w.active += stats.active;
        w.grad_norm_sum += stats.grad_norm;
        w.fvu.add(&x, d, stats.sq_err);
        observer.stepped(counters.step, loss, stats.l0(), features.dead_fraction());

        if counters.step % cfg.log_every == 0 || counters.step == total {
            let w = std::mem::take(&mut counters.window);
            let n = w.rows.max(1) as f64;
            let (mse, l1) = (w.fvu.sq_err / n, w.l1_sum / n);
            let secs = window_started.elapsed().as_secs_f64().max(1e-9);
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
                dead_frac: features.dead_fraction(),
                dense_frac: dense_fraction(&features.densities()),
                tokens_per_s: (counters.tokens - window_tokens_at_start) as f64 / secs,
            };
            append_metrics(&metrics_path, &rec)?;
            observer.logged(&rec);
            window_started = Instant::now();
            window_tokens_at_start = counters.tokens;
        }
        if cfg.recipe == Recipe::UnitNorm
            && crossed(tokens_before, counters.tokens, cfg.resample_every)
            && counters.step < total
        {
            let n = resample_dead(
                engine.as_mut(),
                &mut features,
                &mut loader,
                cfg,
                scale,
                counters.step,
            )?;
            counters.resampled += n as u64;
            if n > 0 {
                observer.note(&format!(
                    "step {}: resampled {n} dead features",
                    counters.step
                ));
            }
        }
        if crossed(tokens_before, counters.tokens, cfg.eval_every) && counters.step < total {
            run_eval(engine.as_mut(), &counters, observer)?;
        }
        if crossed(tokens_before, counters.tokens, cfg.checkpoint_every) && counters.step < total {
            save(engine.as_ref(), &features, &counters, &loader, observer)?;
        }
        crash_for_tests(counters.step);
    }

    // The end: evaluation, checkpoint, export.
    let final_eval = run_eval(engine.as_mut(), &counters, observer)?;
    save(engine.as_ref(), &features, &counters, &loader, observer)?;
    if let Some(reason) = divergence(&final_eval, cfg) {
        // No export that looks fine: the reason in run.json and DIVERGED, the checkpoints kept.
        info.diverged = Some(reason.clone());
        info.save(dir)?;
        checkpoint::mark_diverged(dir, &reason)?;
        return Err(SaeError::Diverged(format!(
            "{reason}; no SAE was exported (the checkpoints in {} are kept)",
            dir.join(checkpoint::CHECKPOINTS_DIR).display()
        )));
    }
    export(
        engine.as_mut(),
        &dataset,
        cfg,
        &info,
        &features,
        &eval_set,
        dir,
    )?;
    let path = dir.join("eval.json");
    let text =
        serde_json::to_string_pretty(&final_eval).map_err(|e| SaeError::Internal(e.to_string()))?;
    crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| SaeError::File {
        path,
        reason: e.to_string(),
    })?;
    info.complete = true;
    info.save(dir)?;
    Ok(TrainSummary {
        dir: dir.to_path_buf(),
        steps: counters.step,
        tokens: counters.tokens,
        seconds: started.elapsed().as_secs_f64(),
        final_eval,
        engine: engine.name(),
        resampled: counters.resampled,
        skipped_rows: counters.skipped_rows,
    })
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

/// Writes the SAELens export and its check file into the run folder.
fn export(
    engine: &mut dyn Engine,
    dataset: &Dataset,
    cfg: &TrainConfig,
    info: &RunInfo,
    features: &FeatureTracker,
    eval_set: &[usize],
    dir: &Path,
) -> Result<()> {
    let (sae, _) = engine.snapshot()?;
    let raw = sae.fold_scaling(info.scaling_factor);
    let meta = ExportMeta {
        model_name: info.model_name.clone(),
        hook_name: cfg.hook.clone(),
        context_size: info.context_size,
        prepend_bos: info.prepend_bos,
        dataset_path: cfg.acts.display().to_string(),
    };
    checkpoint::export_saelens(dir, &raw, &features.densities(), &meta)?;
    // A few held-out inputs, encoded in training space (the path training used) and mapped back.
    let x = sample_rows(dataset, cfg, eval_set, 64)?;
    let s = info.scaling_factor;
    let xs: Vec<f32> = x.iter().map(|v| v * s).collect();
    let f = sae.encode(&xs);
    let x_hat: Vec<f32> = sae.decode(&f).into_iter().map(|v| v / s).collect();
    checkpoint::write_export_check(dir, &x, &f, &x_hat, sae.d_in, sae.d_sae)
}

/// Towards Monosemanticity's resampling: features dead over the window get new directions
/// drawn from inputs the SAE reconstructs badly (probability ∝ loss²): decoder row = the unit
/// input direction (minus b_dec when centring), encoder row = that direction × 0.2 × the mean
/// encoder norm of live features, b_enc = 0, and their Adam moments reset. Returns how many.
fn resample_dead(
    engine: &mut dyn Engine,
    features: &mut FeatureTracker,
    loader: &mut Loader,
    cfg: &TrainConfig,
    scale: f32,
    step: u64,
) -> Result<usize> {
    let dead: Vec<usize> = features
        .dead()
        .iter()
        .enumerate()
        .filter(|(_, &d)| d)
        .map(|(i, _)| i)
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let d = cfg.d_in;
    // Score inputs by squared reconstruction error.
    let mut xs = vec![];
    let mut losses = vec![];
    while losses.len() < cfg.resample_inputs {
        let Some((mut x, rows)) = loader.next_rows()? else {
            break;
        };
        x.iter_mut().for_each(|v| *v *= scale);
        let r = engine.reconstruct(&x, rows)?;
        for t in 0..rows {
            let e: f64 = (0..d)
                .map(|j| ((r.x_hat[t * d + j] - x[t * d + j]) as f64).powi(2))
                .sum();
            losses.push(e * e);
        }
        xs.extend_from_slice(&x);
    }
    let (mut sae, mut adam) = engine.snapshot()?;
    let total: f64 = losses.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Ok(0);
    }
    let alive: Vec<usize> = (0..cfg.d_sae)
        .filter(|i| dead.binary_search(i).is_err())
        .collect();
    let enc_norm = if alive.is_empty() {
        1.0
    } else {
        alive
            .iter()
            .map(|&i| {
                sae.w_enc[i * d..(i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f32>()
                    .sqrt()
            })
            .sum::<f32>()
            / alive.len() as f32
    };
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(crate::store::mix_seed(&[cfg.seed, 0x7265, step]));
    for &i in &dead {
        // Draw an input with probability ∝ loss².
        let mut u = rng.random::<f64>() * total;
        let mut pick = losses.len() - 1;
        for (k, l) in losses.iter().enumerate() {
            if u < *l {
                pick = k;
                break;
            }
            u -= l;
        }
        let mut v: Vec<f32> = xs[pick * d..(pick + 1) * d].to_vec();
        if sae.apply_b_dec_to_input {
            v.iter_mut().zip(&sae.b_dec).for_each(|(a, b)| *a -= b);
        }
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
        for (j, &vj) in v.iter().enumerate() {
            sae.w_dec[i * d + j] = vj / n;
            sae.w_enc[i * d + j] = vj / n * 0.2 * enc_norm;
        }
        sae.b_enc[i] = 0.0;
        for (k, range) in [
            (0, i * d..(i + 1) * d),
            (2, i * d..(i + 1) * d),
            (1, i..i + 1),
        ] {
            adam.m[k][range.clone()].fill(0.0);
            adam.v[k][range].fill(0.0);
        }
        features.reset_feature(i);
    }
    engine.restore(&sae, &adam)?;
    Ok(dead.len())
}
