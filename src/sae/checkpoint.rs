//! Run-folder files: exact-resume checkpoints and the SAELens export.
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

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::metrics::{FeatureTracker, FvuAccumulator};
use super::model::{Sae, PARAM_NAMES};
use super::optim::AdamState;
use super::{Result, SaeError};
use crate::store::LoaderState;

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LATEST_FILE: &str = "latest";
pub const STATE_TENSORS: &str = "trainer_state.safetensors";
pub const STATE_JSON: &str = "trainer_state.json";
/// Written instead of the export when training diverged; holds the reason.
pub const DIVERGED_FILE: &str = "DIVERGED";

fn file_err(path: &Path, reason: impl std::fmt::Display) -> SaeError {
    SaeError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

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

/// Records that the run in `dir` diverged: the `DIVERGED` marker (one line).
pub fn mark_diverged(dir: &Path, reason: &str) -> Result<()> {
    let path = dir.join(DIVERGED_FILE);
    crate::io::write_atomic(&path, format!("{reason}\n").as_bytes()).map_err(|e| file_err(&path, e))
}

/// Removes the marker (a resumed run starts over from its last checkpoint).
pub fn clear_diverged(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(DIVERGED_FILE));
}

/// The reason the run in `dir` diverged, when it did.
pub fn diverged(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(DIVERGED_FILE))
        .ok()
        .map(|s| s.trim().to_string())
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
    d_in: usize,
    d_sae: usize,
    feature_window: u64,
    feature_counts_tokens: u64,
    feature_tokens: u64,
    last_window_tokens: Option<u64>,
}

fn to_tensor_f32(v: &[f32], shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_slice(v, shape, &Device::Cpu)?)
}

fn to_tensor_u64(v: &[u64]) -> Result<Tensor> {
    let n = v.len();
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Ok(Tensor::from_vec(v, n, &Device::Cpu)?)
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
    let shapes: [Vec<usize>; 4] = [vec![s, d], vec![s], vec![s, d], vec![d]];
    let mut tensors: Vec<(String, Tensor)> = vec![];
    for (k, name) in PARAM_NAMES.iter().enumerate() {
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

/// The raw little-endian bytes of tensor `name`, checked to be `len` elements of `dtype`.
fn tensor_bytes<'a>(
    st: &'a safetensors::SafeTensors,
    name: &str,
    dtype: safetensors::Dtype,
    len: usize,
    path: &Path,
) -> Result<&'a [u8]> {
    let t = st
        .tensor(name)
        .map_err(|e| file_err(path, format!("tensor `{name}`: {e}")))?;
    if t.dtype() != dtype || t.data().len() != len * dtype.bitsize() / 8 {
        return Err(file_err(
            path,
            format!("tensor `{name}` has the wrong type or size (expected {len} × {dtype:?})"),
        ));
    }
    Ok(t.data())
}

fn read_f32(
    st: &safetensors::SafeTensors,
    name: &str,
    len: usize,
    path: &Path,
) -> Result<Vec<f32>> {
    let b = tensor_bytes(st, name, safetensors::Dtype::F32, len, path)?;
    Ok(b.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// u64 counters, stored as i64 (candle has no u64).
fn read_u64(
    st: &safetensors::SafeTensors,
    name: &str,
    len: usize,
    path: &Path,
) -> Result<Vec<u64>> {
    let b = tensor_bytes(st, name, safetensors::Dtype::I64, len, path)?;
    Ok(b.chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as u64)
        .collect())
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
    let lens = [s * d, s, s * d, d];
    let mut sae = Sae::zeros(d, s, j.apply_b_dec_to_input);
    let mut adam = AdamState::zeros(lens);
    adam.t = j.adam_t;
    for (k, name) in PARAM_NAMES.iter().enumerate() {
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

// ---- SAELens layout ----------------------------------------------------------------------------

/// What goes into cfg.json's metadata.
#[derive(Debug, Clone)]
pub struct ExportMeta {
    pub model_name: String,
    pub hook_name: String,
    pub context_size: usize,
    pub prepend_bos: bool,
    pub dataset_path: String,
}

/// Writes `sae` (raw-input space: scaling already folded) in SAELens's layout into `dir`.
pub fn export_saelens(dir: &Path, sae: &Sae, densities: &[f64], meta: &ExportMeta) -> Result<()> {
    let (s, d) = (sae.d_sae, sae.d_in);
    // W_enc [d_in, d_sae] is the transpose of our feature-major rows.
    let mut w_enc_t = vec![0f32; d * s];
    for i in 0..s {
        for j in 0..d {
            w_enc_t[j * s + i] = sae.w_enc[i * d + j];
        }
    }
    let tensors = [
        ("W_enc", to_tensor_f32(&w_enc_t, &[d, s])?),
        ("b_enc", to_tensor_f32(&sae.b_enc, &[s])?),
        ("W_dec", to_tensor_f32(&sae.w_dec, &[s, d])?),
        ("b_dec", to_tensor_f32(&sae.b_dec, &[d])?),
    ];
    let path = dir.join("sae_weights.safetensors");
    crate::io::write_safetensors(&path, &tensors).map_err(|e| file_err(&path, e))?;

    let log_density: Vec<f32> = densities
        .iter()
        .map(|&p| (p + 1e-10).log10() as f32)
        .collect();
    let sp = [("sparsity", to_tensor_f32(&log_density, &[s])?)];
    let path = dir.join("sparsity.safetensors");
    crate::io::write_safetensors(&path, &sp).map_err(|e| file_err(&path, e))?;

    let cfg = serde_json::json!({
        "architecture": "standard",
        "d_in": d,
        "d_sae": s,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": meta.model_name,
            "hook_name": meta.hook_name,
            "hook_head_index": null,
            "context_size": meta.context_size,
            "prepend_bos": meta.prepend_bos,
            "dataset_path": meta.dataset_path,
            "sae_lens_version": "6.0.0",
            "sae_lens_training_version": null,
            "trained_with": format!("unravel {}", env!("CARGO_PKG_VERSION")),
        }
    });
    let path = dir.join("cfg.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| file_err(&path, e))?;
    crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))
}

/// Writes `export_check.safetensors`: raw inputs `x [n, d_in]` with the features and
/// reconstructions our SAE computes for them.
pub fn write_export_check(
    dir: &Path,
    x: &[f32],
    feature_acts: &[f32],
    x_hat: &[f32],
    d_in: usize,
    d_sae: usize,
) -> Result<()> {
    let n = x.len() / d_in.max(1);
    let tensors = [
        ("x", to_tensor_f32(x, &[n, d_in])?),
        ("feature_acts", to_tensor_f32(feature_acts, &[n, d_sae])?),
        ("x_hat", to_tensor_f32(x_hat, &[n, d_in])?),
    ];
    let path = dir.join("export_check.safetensors");
    crate::io::write_safetensors(&path, &tensors).map_err(|e| file_err(&path, e))
}

/// An SAE in SAELens's layout, read back (local folder).
#[derive(Debug, Clone)]
pub struct LoadedSae {
    pub sae: Sae,
    /// `metadata.hook_name` (or the legacy top-level `hook_name`), if present.
    pub hook_name: Option<String>,
    pub model_name: Option<String>,
    pub dir: PathBuf,
}

/// Finds a SAELens-layout SAE: a local folder, or `OWNER/REPO[/SUB/FOLDER]` on the Hugging Face
/// hub (SAELens releases keep one SAE per sub-folder), downloaded into the standard cache
/// (`HF_HOME`; `HF_HUB_OFFLINE=1` uses the cache only). Returns the local folder.
pub fn locate_saelens(spec: &str, hub: &crate::hub::HubOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let parts: Vec<&str> = spec.split('/').collect();
    let hub_like = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..")
        && !spec.starts_with('.')
        && !spec.starts_with('~');
    if !hub_like {
        return Err(file_err(path, "no such folder (expected a SAELens folder with cfg.json + sae_weights.safetensors, or OWNER/REPO[/SUBFOLDER] on the hub)"));
    }
    let repo_id = format!("{}/{}", parts[0], parts[1]);
    let sub = parts[2..].join("/");
    let repo =
        crate::hub::HubRepo::open(&repo_id, hub).map_err(|e| SaeError::Config(e.to_string()))?;
    let name = |f: &str| {
        if sub.is_empty() {
            f.to_string()
        } else {
            format!("{sub}/{f}")
        }
    };
    let mut folder = None;
    for f in ["cfg.json", "sae_weights.safetensors"] {
        let p = repo
            .get(&name(f))
            .map_err(|e| SaeError::Config(e.to_string()))?
            .ok_or_else(|| {
                SaeError::Config(format!(
                    "{spec}: no local folder, and hub repo {repo_id} has no {} (cache: {})",
                    name(f),
                    repo.cache_path.display()
                ))
            })?;
        folder = p.parent().map(Path::to_path_buf);
    }
    folder.ok_or_else(|| SaeError::Internal("hub file without a folder".into()))
}

/// Loads `cfg.json` + `sae_weights.safetensors` from a SAELens-layout folder (ours, or one
/// downloaded from the hub). Only the `standard` (ReLU) architecture is supported.
pub fn load_saelens(dir: &Path) -> Result<LoadedSae> {
    if let Some(reason) = diverged(dir) {
        return Err(file_err(
            dir,
            format!("training diverged ({reason}); it exported no SAE"),
        ));
    }
    let cpath = dir.join("cfg.json");
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        file_err(
            &cpath,
            format!("{e}; expected a SAELens folder (cfg.json + sae_weights.safetensors)"),
        )
    })?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| file_err(&cpath, format!("bad JSON: {e}")))?;
    let arch = cfg
        .get("architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("standard");
    if arch != "standard" {
        return Err(file_err(
            &cpath,
            format!("architecture `{arch}` is not supported (only `standard` ReLU SAEs)"),
        ));
    }
    let get_usize = |k: &str| {
        cfg.get(k)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| file_err(&cpath, format!("missing `{k}`")))
    };
    let (d, s) = (get_usize("d_in")?, get_usize("d_sae")?);
    let apply = cfg
        .get("apply_b_dec_to_input")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let norm = cfg
        .get("normalize_activations")
        .and_then(|v| v.as_str())
        .unwrap_or("none");
    if norm != "none" {
        return Err(file_err(
            &cpath,
            format!("normalize_activations = `{norm}` is not supported (only `none`)"),
        ));
    }
    let meta = cfg.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .or_else(|| cfg.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let wpath = dir.join("sae_weights.safetensors");
    let bytes = std::fs::read(&wpath).map_err(|e| file_err(&wpath, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(&wpath, format!("damaged weights: {e}")))?;
    let w_enc_t = read_f32(&st, "W_enc", d * s, &wpath)?;
    let mut sae = Sae::zeros(d, s, apply);
    for i in 0..s {
        for j in 0..d {
            sae.w_enc[i * d + j] = w_enc_t[j * s + i];
        }
    }
    sae.b_enc = read_f32(&st, "b_enc", s, &wpath)?;
    sae.w_dec = read_f32(&st, "W_dec", s * d, &wpath)?;
    sae.b_dec = read_f32(&st, "b_dec", d, &wpath)?;
    Ok(LoadedSae {
        sae,
        hook_name: field("hook_name"),
        model_name: field("model_name"),
        dir: dir.to_path_buf(),
    })
}
