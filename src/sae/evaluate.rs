//! `unravel eval` as a library entry point: an SAE (any SAELens-layout folder) evaluated on the
//! shards of an activation dataset, and the report written as `eval-report.json`.
//!
//! [`resolve`] picks and checks the hook, [`EvalPlan::new`] the shards (the run's held-out shards
//! when the dataset is the one the SAE was trained on, recognised by its manifest's sha256),
//! [`run`] evaluates, and [`EvalReport`](super::eval_report::EvalReport) is what the file holds.

use std::path::Path;

use sha2::Digest;

use super::checkpoint::{LoadedSae, RunInfo};
use super::config::{PartialConfig, TrainConfig};
use super::optim::AdamState;
use super::train::{self, EvalRecord};
use super::SaeError;
use crate::store::{Dataset, ReadOptions};

/// Which shards to evaluate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardChoice {
    /// The run's held-out shards when the dataset is the run's own, else all.
    HeldOut,
    All,
}

impl std::str::FromStr for ShardChoice {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, EvalError> {
        match s {
            "heldout" => Ok(Self::HeldOut),
            "all" => Ok(Self::All),
            other => Err(EvalError::ShardChoice(other.to_string())),
        }
    }
}

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Hook (column); default: the SAE's hook when the dataset has it, else the only hook.
    pub hook: Option<String>,
    /// auto, cpu, cuda, cuda:N or metal.
    pub device: String,
    pub read: ReadOptions,
}

/// Errors of resolving an evaluation; the value they name is given, not the flag it came from.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Sae(#[from] SaeError),
    /// The SAE's input width differs from the hook's.
    #[error("{sae}: the SAE reads d_in = {sae_d_in}, but hook {hook} in {acts} has d = {d}")]
    Width {
        sae: String,
        sae_d_in: usize,
        hook: String,
        acts: String,
        d: usize,
    },
    /// A shard choice other than `heldout` or `all`.
    #[error("{0}: expected heldout or all")]
    ShardChoice(String),
}

/// A resolved evaluation: the config the engine runs with and the shards it reads.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    pub cfg: TrainConfig,
    pub shards: Vec<usize>,
    /// Whether `shards` are the run's held-out shards.
    pub held_out: bool,
}

/// The config of evaluating `loaded` (named `sae` in messages) on the hook of `ds` (the
/// dataset in `acts`): the hook resolved, its width checked against the SAE's.
pub fn resolve(
    sae: &str,
    loaded: &LoadedSae,
    acts: &Path,
    ds: &Dataset,
    opts: &EvalOptions,
) -> Result<TrainConfig, EvalError> {
    let hooks: Vec<(String, usize)> = ds
        .manifest()
        .hooks
        .iter()
        .map(|h| (h.name.clone(), h.d))
        .collect();
    let hook = opts.hook.clone().or_else(|| {
        loaded
            .hook_name
            .clone()
            .filter(|h| hooks.iter().any(|(n, _)| n == h))
    });
    let partial = PartialConfig {
        acts: Some(acts.to_path_buf()),
        hook,
        d_sae: Some(loaded.sae.d_sae),
        tokens: Some(4096),
        device: Some(opts.device.clone()),
        skip_nonfinite: Some(opts.read.skip_nonfinite),
        allow_incomplete: Some(opts.read.allow_incomplete),
        ..Default::default()
    };
    let cfg = TrainConfig::resolve(partial, &hooks)?;
    if cfg.d_in != loaded.sae.d_in {
        return Err(EvalError::Width {
            sae: sae.to_string(),
            sae_d_in: loaded.sae.d_in,
            hook: cfg.hook.clone(),
            acts: acts.display().to_string(),
            d: cfg.d_in,
        });
    }
    Ok(cfg)
}

impl EvalPlan {
    /// Picks the shards: with [`ShardChoice::HeldOut`], the held-out shards of the run in
    /// `sae_dir` when `acts` is its dataset; otherwise every shard of `ds`.
    pub fn new(
        cfg: TrainConfig,
        choice: ShardChoice,
        sae_dir: &Path,
        acts: &Path,
        ds: &Dataset,
    ) -> EvalPlan {
        let (shards, held_out) = match (choice, own_run(sae_dir, acts)) {
            (ShardChoice::HeldOut, Some(info)) if !info.eval_shards.is_empty() => {
                (info.eval_shards, true)
            }
            _ => ((0..ds.shard_count()).collect(), false),
        };
        EvalPlan {
            cfg,
            shards,
            held_out,
        }
    }
}

/// The run's info when `acts` is the dataset the run in `sae_dir` was trained on (same manifest
/// bytes).
fn own_run(sae_dir: &Path, acts: &Path) -> Option<RunInfo> {
    RunInfo::load(sae_dir).ok().filter(|info| {
        std::fs::read(crate::store::manifest_path(acts))
            .map(|b| hex::encode(sha2::Sha256::digest(&b)) == info.manifest_sha256)
            .unwrap_or(false)
    })
}

/// Rows [`run`] reads for at most `max_tokens` tokens (the length of a progress bar).
pub fn rows(ds: &Dataset, plan: &EvalPlan, max_tokens: u64) -> u64 {
    train::evaluation_rows(ds, &plan.cfg, &plan.shards, max_tokens)
}

/// Evaluates `loaded` on at most `max_tokens` tokens of the plan's shards; `progress` receives
/// the rows evaluated so far.
pub fn run(
    ds: &Dataset,
    plan: &EvalPlan,
    loaded: &LoadedSae,
    max_tokens: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<EvalRecord, SaeError> {
    let adam = AdamState::zeros([0; 6]);
    let mut engine = train::make_engine(&plan.cfg, &loaded.sae, &adam)?;
    let (acc, totals) = train::evaluate_observed(
        engine.as_mut(),
        ds,
        &plan.cfg,
        &plan.shards,
        1.0,
        max_tokens,
        progress,
    )?;
    Ok(totals.record(&acc, 0, 0, plan.held_out))
}
