//! Run-folder files: exact-resume checkpoints (the own format); the SAELens export beside them
//! is written and read by [`super::saelens`].
//!
//! A run folder holds:
//! - `config.toml` (the resolved [`TrainConfig`]) and `run.json` ([`RunInfo`]: dataset, manifest
//!   hash, scaling factor, state);
//! - `metrics.jsonl`, one JSON object per logging step and per evaluation;
//! - `checkpoints/step-NNNNNNNNN/{trainer_state.safetensors, trainer_state.json}` and
//!   `checkpoints/latest` naming the newest complete one (each checkpoint folder is written under a
//!   temporary name and renamed, then `latest` is replaced atomically, then older ones removed);
//! - the SAELens export, in the run folder itself so `SAE.load_from_disk(run)` works: `cfg.json`,
//!   `sae_weights.safetensors` (`W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec`,
//!   input scaling folded in), `sparsity.safetensors` (`sparsity`: log10 feature density), and
//!   `export_check.safetensors` (a few raw inputs with our features and reconstructions, for
//!   `scripts/check_saelens_export.py`);
//! - instead of the export, when training diverged: `DIVERGED` (the reason, one line), also in
//!   `run.json` as `diverged`; the checkpoints are kept.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::metrics::{FeatureTracker, FvuAccumulator};
use super::model::{Sae, PARAM_NAMES};
use super::optim::AdamState;
use super::Result;
use crate::store::LoaderState;

// The divergence marker and the SAELens import/export live in files.rs and saelens.rs; their
// items stay reachable here too.
pub use super::files::{
    clear_diverged, diverged, mark_diverged, CHECKPOINTS_DIR, DIVERGED_FILE, LATEST_FILE,
};
use super::files::{file_err, read_f32, read_u64, to_tensor_f32, to_tensor_u64};
pub use super::saelens::{
    export_saelens, load_saelens, locate_saelens, write_export_check, ExportMeta, LoadedSae,
};

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const STATE_TENSORS: &str = "trainer_state.safetensors";
pub const STATE_JSON: &str = "trainer_state.json";

/// What the run is, beside its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// sha256 of the dataset's manifest.json when the run started.
    pub manifest_sha256: String,
    /// The dataset's model id (for the export's metadata).
    pub model_name: String,
    pub context_size: usize,
    pub prepend_bos: bool,
    /// Inputs are multiplied by this during training (E‖x·s‖ = √d_in).
    pub scaling_factor: f32,
    /// Training and held-out shard indices.
    pub train_shards: Vec<usize>,
    pub eval_shards: Vec<usize>,
    /// The run reached its token budget.
    pub complete: bool,
    pub engine: String,
    /// Why training diverged (non-finite loss, negative EV, every feature dead); no export then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
}

impl RunInfo {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(RUN_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| file_err(&path, e))?;
        crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))
    }

    pub fn load(dir: &Path) -> Result<RunInfo> {
        let path = dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            file_err(
                &path,
                format!("{e}; is this a run folder made by `unravel train`?"),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| file_err(&path, format!("damaged run file: {e}")))
    }
}

pub fn save_config(cfg: &TrainConfig, dir: &Path) -> Result<()> {
    let path = dir.join(CONFIG_FILE);
    let text = toml::to_string(cfg).map_err(|e| file_err(&path, e))?;
    crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))
}

pub fn load_config(dir: &Path) -> Result<TrainConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        file_err(
            &path,
            format!("{e}; is this a run folder made by `unravel train`?"),
        )
    })?;
    toml::from_str(&text).map_err(|e| file_err(&path, format!("damaged config: {e}")))
}

/// The trainer's counters and accumulators between two steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerCounters {
    /// Steps done.
    pub step: u64,
    /// Tokens trained on.
    pub tokens: u64,
    pub loader: LoaderState,
    /// Length of metrics.jsonl at this point (a resumed run truncates it there).
    pub metrics_bytes: u64,
    /// The open logging window.
    pub window: LogWindow,
    /// Rows dropped for NaN/Inf values (with --skip-nonfinite).
    pub skipped_rows: u64,
    /// Features resampled so far.
    pub resampled: u64,
    /// `--target-l0`'s controller (absent in checkpoints of older versions: λ unscaled).
    #[serde(default)]
    pub l0_control: crate::sae::target_l0::L0Control,
}

/// Sums over the steps since the last log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogWindow {
    pub steps: u64,
    pub rows: u64,
    pub l1_sum: f64,
    pub active: u64,
    pub grad_norm_sum: f64,
    pub fvu: FvuAccumulator,
}

/// Everything a run needs to continue exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    pub sae: Sae,
    pub adam: AdamState,
    pub features: FeatureTracker,
    pub counters: TrainerCounters,
}

#[derive(Serialize, Deserialize)]
struct StateJson {
    counters: TrainerCounters,
    adam_t: u64,
    apply_b_dec_to_input: bool,
    /// A gated SAE: `r_mag` and `b_mag` (and their moments) are in the tensors too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gated: bool,
    d_in: usize,
    d_sae: usize,
    feature_window: u64,
    feature_counts_tokens: u64,
    feature_tokens: u64,
    last_window_tokens: Option<u64>,
}

/// The shapes of the parameters in `PARAM_NAMES` order.
fn param_shapes(d: usize, s: usize) -> [Vec<usize>; 6] {
    [vec![s, d], vec![s], vec![s, d], vec![d], vec![s], vec![s]]
}

/// How many of `PARAM_NAMES` a checkpoint holds: four, six for a gated SAE.
fn param_count(gated: bool) -> usize {
    if gated {
        6
    } else {
        4
    }
}

/// Saves a checkpoint; returns its folder.
pub fn save_checkpoint(dir: &Path, state: &TrainerState) -> Result<PathBuf> {
    let root = dir.join(CHECKPOINTS_DIR);
    let name = format!("step-{:09}", state.counters.step);
    let final_dir = root.join(&name);
    let tmp_dir = root.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp_dir);
    std::fs::create_dir_all(&tmp_dir).map_err(|e| file_err(&tmp_dir, e))?;

    let (s, d) = (state.sae.d_sae, state.sae.d_in);
    let shapes = param_shapes(d, s);
    let gated = state.sae.is_gated();
    let mut tensors: Vec<(String, Tensor)> = vec![];
    for (k, name) in PARAM_NAMES.iter().enumerate().take(param_count(gated)) {
        tensors.push((
            name.to_string(),
            to_tensor_f32(state.sae.params()[k], &shapes[k])?,
        ));
        tensors.push((
            format!("adam.m.{name}"),
            to_tensor_f32(&state.adam.m[k], &shapes[k])?,
        ));
        tensors.push((
            format!("adam.v.{name}"),
            to_tensor_f32(&state.adam.v[k], &shapes[k])?,
        ));
    }
    let f = &state.features;
    tensors.push(("features.last_fired".into(), to_tensor_u64(&f.last_fired)?));
    tensors.push(("features.counts".into(), to_tensor_u64(&f.counts)?));
    if let Some((c, _)) = &f.last_window {
        tensors.push(("features.last_window".into(), to_tensor_u64(c)?));
    }
    let path = tmp_dir.join(STATE_TENSORS);
    crate::io::write_safetensors(&path, &tensors).map_err(|e| file_err(&path, e))?;
    let json = StateJson {
        counters: state.counters.clone(),
        adam_t: state.adam.t,
        apply_b_dec_to_input: state.sae.apply_b_dec_to_input,
        gated,
        d_in: d,
        d_sae: s,
        feature_window: f.window,
        feature_counts_tokens: f.counts_tokens,
        feature_tokens: f.tokens,
        last_window_tokens: f.last_window.as_ref().map(|(_, t)| *t),
    };
    let path = tmp_dir.join(STATE_JSON);
    let text = serde_json::to_string_pretty(&json).map_err(|e| file_err(&path, e))?;
    crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))?;

    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| file_err(&final_dir, e))?;
    let latest = root.join(LATEST_FILE);
    crate::io::write_atomic(&latest, name.as_bytes()).map_err(|e| file_err(&latest, e))?;
    // Older checkpoints are no longer needed.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(final_dir)
}

/// Whether the run folder has a checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(CHECKPOINTS_DIR).join(LATEST_FILE).is_file()
}

/// Loads the newest checkpoint of a run folder.
pub fn load_checkpoint(dir: &Path) -> Result<TrainerState> {
    let root = dir.join(CHECKPOINTS_DIR);
    let latest = root.join(LATEST_FILE);
    let name = std::fs::read_to_string(&latest)
        .map_err(|e| file_err(&latest, format!("{e}: no checkpoint to resume from")))?;
    let ck = root.join(name.trim());
    let jpath = ck.join(STATE_JSON);
    let text = std::fs::read_to_string(&jpath).map_err(|e| file_err(&jpath, e))?;
    let j: StateJson = serde_json::from_str(&text)
        .map_err(|e| file_err(&jpath, format!("damaged checkpoint: {e}")))?;
    let tpath = ck.join(STATE_TENSORS);
    let bytes = std::fs::read(&tpath).map_err(|e| file_err(&tpath, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(&tpath, format!("damaged checkpoint: {e}")))?;
    let (s, d) = (j.d_sae, j.d_in);
    let mut sae = if j.gated {
        Sae::zeros_gated(d, s, j.apply_b_dec_to_input)
    } else {
        Sae::zeros(d, s, j.apply_b_dec_to_input)
    };
    let lens = sae.param_lens();
    let mut adam = AdamState::zeros(lens);
    adam.t = j.adam_t;
    for (k, name) in PARAM_NAMES.iter().enumerate().take(param_count(j.gated)) {
        *sae.params_mut()[k] = read_f32(&st, name, lens[k], &tpath)?;
        adam.m[k] = read_f32(&st, &format!("adam.m.{name}"), lens[k], &tpath)?;
        adam.v[k] = read_f32(&st, &format!("adam.v.{name}"), lens[k], &tpath)?;
    }
    let last_window = match j.last_window_tokens {
        Some(t) => Some((read_u64(&st, "features.last_window", s, &tpath)?, t)),
        None => None,
    };
    let features = FeatureTracker {
        window: j.feature_window,
        last_fired: read_u64(&st, "features.last_fired", s, &tpath)?,
        counts: read_u64(&st, "features.counts", s, &tpath)?,
        counts_tokens: j.feature_counts_tokens,
        last_window,
        tokens: j.feature_tokens,
    };
    Ok(TrainerState {
        sae,
        adam,
        features,
        counters: j.counters,
    })
}
