//! Setting a run up: the dataset checked against the config, a new run (split, input scaling,
//! initial SAE, fresh state) or a resumed one (its checkpoint, checked against the dataset), the
//! engine and the training loader.

use std::path::Path;

use super::log::truncate_metrics;
use super::source::{Batches, Input, RowSource, HELD_OUT_START};
use super::split::choose_split;
use crate::sae::checkpoint::{self, LogWindow, RunInfo, TrainerCounters, TrainerState};
use crate::sae::config::{EngineChoice, Recipe, TrainConfig};
use crate::sae::fast::FastEngine;
use crate::sae::metrics::FeatureTracker;
use crate::sae::model::{geometric_median, Sae};
use crate::sae::optim::AdamState;
use crate::sae::plain::PlainEngine;
use crate::sae::step::Engine;
use crate::sae::{Result, SaeError};
use crate::store::{Dataset, Loader, LoaderConfig, LoaderMode};

/// Opens the dataset and checks that the run fits it (the hook's width) and fits in memory;
/// refused before the run folder or any weight exists.
pub(super) fn open_dataset(cfg: &TrainConfig) -> Result<Dataset> {
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
    check_memory(cfg)?;
    Ok(dataset)
}

/// Checks that a streamed run fits its generator (the row width) and fits in memory.
pub(super) fn check_stream(cfg: &TrainConfig, source: &dyn RowSource) -> Result<()> {
    if source.d() != cfg.d_in {
        return Err(SaeError::Config(format!(
            "the generator makes rows of d = {}, but the SAE has d_in = {}",
            source.d(),
            cfg.d_in
        )));
    }
    check_memory(cfg)
}

/// Refused before the run folder or any weight exists.
fn check_memory(cfg: &TrainConfig) -> Result<()> {
    crate::memory::check_fits(
        &format!(
            "an SAE of {} → {} features (batch {})",
            cfg.d_in, cfg.d_sae, cfg.batch
        ),
        cfg.memory_bytes(),
        "lower --d-sae (or --expansion) or --batch",
    )
    .map_err(|e| SaeError::Config(e.to_string()))
}

/// The run in `dir`, from its last checkpoint, checked against the dataset (`manifest_sha256`)
/// and the config; metric lines written after the checkpoint are dropped.
pub(super) fn resume(
    cfg: &TrainConfig,
    dir: &Path,
    manifest_sha256: String,
    metrics_path: &Path,
) -> Result<(RunInfo, TrainerState)> {
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
    truncate_metrics(metrics_path, state.counters.metrics_bytes)?;
    Ok((info, state))
}

/// A new run in `dir`: the split, the input scaling, the initial SAE, config.toml, and the
/// state before the first step (an old metrics.jsonl removed).
pub(super) fn start(
    input: &Input,
    cfg: &TrainConfig,
    dir: &Path,
    manifest_sha256: String,
    metrics_path: &Path,
) -> Result<(RunInfo, TrainerState)> {
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
    let (train_shards, eval_shards) = match input {
        Input::Store(dataset) => choose_split(dataset, cfg)?,
        Input::Stream(_) => (vec![], vec![]),
    };
    let sample = input_rows(input, cfg, &train_shards, cfg.scale_tokens, false)?;
    if sample.is_empty() {
        return Err(SaeError::Data(format!(
            "{}: hook {} has no rows to train on",
            cfg.acts.display(),
            cfg.hook
        )));
    }
    let (sae, scaling_factor) = initial_sae(cfg, &sample)?;
    // A streamed run has no model or contexts: each row stands alone.
    let (model_name, context_size, prepend_bos) = match input.dataset() {
        Some(dataset) => {
            let m = dataset.manifest();
            let bos = !matches!(m.bos, crate::store::Bos::None);
            (m.model.id.clone(), m.ctx, bos)
        }
        None => ("synthetic".to_string(), 1, false),
    };
    let info = RunInfo {
        manifest_sha256,
        model_name,
        context_size,
        prepend_bos,
        scaling_factor,
        train_shards,
        eval_shards,
        complete: false,
        engine: String::new(),
        diverged: None,
    };
    checkpoint::save_config(cfg, dir)?;
    let _ = std::fs::remove_file(metrics_path);
    Ok((info, fresh_state(cfg, sae)))
}

/// The SAE a new run starts from (`--from`, or the recipe's initialisation) in training space,
/// and the input scaling factor measured on `sample`.
fn initial_sae(cfg: &TrainConfig, sample: &[f32]) -> Result<(Sae, f32)> {
    let d = cfg.d_in;
    Ok(match &cfg.from {
        Some(from) => {
            let folder = checkpoint::locate_saelens(from, &crate::hub::HubOptions::default())?;
            let loaded = checkpoint::load_saelens(&folder)?;
            if loaded.sae.d_in != d || loaded.sae.d_sae != cfg.d_sae {
                return Err(SaeError::Config(format!(
                    "--from {from}: the SAE is {}→{}, the run wants {}→{}",
                    loaded.sae.d_in, loaded.sae.d_sae, d, cfg.d_sae
                )));
            }
            if loaded.sae.is_gated() != (cfg.recipe == Recipe::Gated) {
                return Err(SaeError::Config(format!(
                    "--from {from}: a {} SAE cannot continue with --recipe {}",
                    if loaded.sae.is_gated() {
                        "gated"
                    } else {
                        "standard"
                    },
                    cfg.recipe.name()
                )));
            }
            let s = scaling_factor(sample, d)?;
            (loaded.sae.unfold_scaling(s), s)
        }
        None => {
            let s = scaling_factor(sample, d)?;
            let sae = match cfg.recipe {
                Recipe::April2024 => Sae::init_april(d, cfg.d_sae, cfg.dec_init_norm, cfg.seed),
                Recipe::Gated => Sae::init_gated(d, cfg.d_sae, cfg.dec_init_norm, cfg.seed),
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
    })
}

/// The trainer's state before the first step.
fn fresh_state(cfg: &TrainConfig, sae: Sae) -> TrainerState {
    TrainerState {
        adam: AdamState::for_sae(&sae),
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
            l0_control: Default::default(),
        },
        sae,
    }
}

/// The training batches, positioned where the counters say (a resumed run): the shuffled
/// loader over the training shards, or the generator from the next row index.
pub(super) fn train_loader(
    input: &Input,
    cfg: &TrainConfig,
    info: &RunInfo,
    counters: &TrainerCounters,
) -> Result<Batches> {
    let saved = (counters.step > 0).then_some(&counters.loader);
    let dataset = match input {
        Input::Store(dataset) => dataset,
        Input::Stream(source) => return Batches::stream(source.clone(), cfg.batch, saved),
    };
    let mut lc = LoaderConfig::new(&cfg.hook, cfg.batch);
    lc.shards = Some(info.train_shards.clone());
    lc.seed = cfg.seed;
    lc.shuffle_buffer = cfg.shuffle_buffer;
    lc.include_special = cfg.include_special;
    let cpu = candle_core::Device::Cpu;
    Ok(Batches::Store(match saved {
        Some(state) => Loader::resume(dataset, &lc, &cpu, state)?,
        None => Loader::new(dataset, &lc, &cpu)?,
    }))
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

/// What a resumed run checks its input against: the sha256 of a dataset's manifest.json, or the
/// generator's fingerprint.
pub(super) fn input_sha(input: &Input) -> Result<String> {
    use sha2::{Digest, Sha256};
    let dataset = match input {
        Input::Store(dataset) => dataset,
        Input::Stream(source) => return Ok(source.fingerprint()),
    };
    let path = crate::store::manifest_path(dataset.dir());
    let bytes = std::fs::read(&path).map_err(|e| SaeError::File {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// A single-pass loader over `shards`.
pub(super) fn ordered_loader(
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

/// Up to `tokens` rows in order: of `shards`, or of a stream's training rows (its held-out rows
/// with `held_out`).
pub(super) fn input_rows(
    input: &Input,
    cfg: &TrainConfig,
    shards: &[usize],
    tokens: u64,
    held_out: bool,
) -> Result<Vec<f32>> {
    match input {
        Input::Store(dataset) => sample_rows(dataset, cfg, shards, tokens),
        Input::Stream(source) => {
            let start = if held_out { HELD_OUT_START } else { 0 };
            Ok(source.rows(start, tokens as usize))
        }
    }
}

/// Up to `tokens` rows of `shards` in file order.
pub(super) fn sample_rows(
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
