//! Finding a model's files (local folder, config file, or Hugging Face hub repo through hf-hub's
//! standard cache) and reading its tensors with checked names and shapes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::hub::{HubError, HubOptions, HubRepo};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model folder or file `{0}` does not exist (pass a local folder with config.json, or a hub repo id such as `gpt2`)")]
    NotFound(PathBuf),
    #[error("{dir}: no {what}; {hint}")]
    MissingFile {
        dir: PathBuf,
        what: String,
        hint: String,
    },
    #[error("{file}: {reason}")]
    BadConfig { file: PathBuf, reason: String },
    #[error("{file}: cannot read safetensors ({reason}); the file is damaged or incomplete, download it again")]
    BadSafetensors { file: PathBuf, reason: String },
    #[error("tensor `{name}` is missing from {files}")]
    MissingTensor { name: String, files: String },
    #[error("tensor `{name}` in {file} has shape {got:?}, the config needs {expected:?}")]
    ShapeMismatch {
        name: String,
        file: PathBuf,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

/// The files that make up a model.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// What the user named: a folder, a config file or a repo id.
    pub id: String,
    /// The hub revision (for hub models), for manifests.
    pub revision: Option<String>,
    pub config: PathBuf,
    /// Safetensors files; empty when only a config was found.
    pub weights: Vec<PathBuf>,
    pub tokenizer: Option<PathBuf>,
}

/// Finds the files for `spec`: a local folder, a local `config.json`-style file, or a hub repo id.
/// When `need_weights` is false (random weights) only the config is required.
pub fn resolve(spec: &str, hub: &HubOptions, need_weights: bool) -> Result<ModelFiles, LoadError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return resolve_local_dir(spec, path, need_weights);
    }
    if path.is_file() {
        // A bare config file: random weights only (used for benchmarks).
        if need_weights {
            return Err(LoadError::MissingFile {
                dir: path.into(),
                what: "weights beside this config file".into(),
                hint: "pass --random-weights, or a model folder with model.safetensors".into(),
            });
        }
        return Ok(ModelFiles {
            id: spec.into(),
            revision: None,
            config: path.to_path_buf(),
            weights: vec![],
            tokenizer: None,
        });
    }
    if looks_like_path(spec) {
        return Err(LoadError::NotFound(path.to_path_buf()));
    }
    resolve_hub(spec, hub, need_weights)
}

fn looks_like_path(spec: &str) -> bool {
    spec.starts_with('.')
        || spec.starts_with('/')
        || spec.starts_with('~')
        || spec.ends_with(".json")
        || spec.matches('/').count() > 1
        || spec.is_empty()
}

fn resolve_local_dir(spec: &str, dir: &Path, need_weights: bool) -> Result<ModelFiles, LoadError> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(LoadError::MissingFile {
            dir: dir.into(),
            what: "config.json".into(),
            hint: "a model folder needs config.json (as written by save_pretrained)".into(),
        });
    }
    let weights = if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else if dir.join("model.safetensors.index.json").is_file() {
        shard_files(&dir.join("model.safetensors.index.json"))?
            .into_iter()
            .map(|f| dir.join(f))
            .collect()
    } else {
        vec![]
    };
    if need_weights && weights.is_empty() {
        return Err(no_weights_error(dir));
    }
    for w in &weights {
        if !w.is_file() {
            return Err(LoadError::NotFound(w.clone()));
        }
    }
    let tokenizer = Some(dir.join("tokenizer.json")).filter(|t| t.is_file());
    Ok(ModelFiles {
        id: spec.into(),
        revision: None,
        config,
        weights,
        tokenizer,
    })
}

fn no_weights_error(dir: &Path) -> LoadError {
    LoadError::MissingFile {
        dir: dir.into(),
        what: "model.safetensors or model.safetensors.index.json".into(),
        hint: "unravel reads safetensors only (convert pytorch_model.bin with transformers' save_pretrained), or pass --random-weights".into(),
    }
}

/// The shard file names listed in a sharded checkpoint's index, in first-seen order.
fn shard_files(index: &Path) -> Result<Vec<String>, LoadError> {
    let bad = |reason: String| LoadError::BadConfig {
        file: index.into(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files: Vec<String> = vec![];
    for v in map.values() {
        let f = v
            .as_str()
            .ok_or_else(|| bad("a `weight_map` value is not a file name".into()))?;
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    Ok(files)
}

fn resolve_hub(repo: &str, hub: &HubOptions, need_weights: bool) -> Result<ModelFiles, LoadError> {
    let hub_repo = HubRepo::open(repo, hub)?;
    let hub_err = |reason: String| hub_repo.error(reason);
    let cache_path = hub_repo.cache_path.clone();
    let fetch = |file: &str| hub_repo.get(file);
    let where_ = || match &hub.cache_dir {
        Some(d) => d.display().to_string(),
        None => cache_path.display().to_string(),
    };
    let config = fetch("config.json")?.ok_or_else(|| {
        hub_err(format!(
            "config.json is not in the cache at {}{}",
            where_(),
            if hub.offline {
                " (offline mode: download the model once with network access)"
            } else {
                ""
            }
        ))
    })?;
    let mut weights = vec![];
    if let Some(p) = fetch("model.safetensors")? {
        weights.push(p);
    } else if let Some(index) = fetch("model.safetensors.index.json")? {
        for f in shard_files(&index)? {
            let p = fetch(&f)?
                .ok_or_else(|| hub_err(format!("shard {f} listed in the index is missing")))?;
            weights.push(p);
        }
    }
    if need_weights && weights.is_empty() {
        return Err(hub_err(format!(
            "no model.safetensors or model.safetensors.index.json (cache: {})",
            where_()
        ))
        .into());
    }
    let tokenizer = fetch("tokenizer.json")?;
    Ok(ModelFiles {
        id: repo.into(),
        revision: Some(hub.revision.clone()),
        config,
        weights,
        tokenizer,
    })
}

/// Reads and parses a JSON config, naming the file on error.
pub fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|e| LoadError::BadConfig {
        file: file.into(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::BadConfig {
        file: file.into(),
        reason: format!("not a valid model config: {e}"),
    })
}

/// How a tensor is initialised when weights are random.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Normal(f32),
    Ones,
    Zeros,
}

/// Where tensors come from: safetensors files (with a detected key prefix) or a seeded RNG.
pub struct Weights {
    source: Source,
    dtype: DType,
    device: Device,
}

enum Source {
    Files {
        files: Vec<(PathBuf, MmapedSafetensors)>,
        /// tensor name → index in `files`
        index: HashMap<String, usize>,
        prefix: String,
    },
    Random(Box<Mutex<rand::rngs::StdRng>>),
}

impl Weights {
    /// Opens safetensors files (memory-mapped).
    pub fn from_files(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<Self, LoadError> {
        let mut files = vec![];
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            // Safety: the file is mapped read-only; we do not modify it while it is mapped.
            let st =
                unsafe { MmapedSafetensors::new(path) }.map_err(|e| LoadError::BadSafetensors {
                    file: path.clone(),
                    reason: e.to_string(),
                })?;
            for (name, _) in st.tensors() {
                index.insert(name, i);
            }
            files.push((path.clone(), st));
        }
        Ok(Weights {
            source: Source::Files {
                files,
                index,
                prefix: String::new(),
            },
            dtype,
            device: device.clone(),
        })
    }

    /// Random weights from a seed: `Init::Normal(std)` for matrices, ones/zeros for norms and biases.
    pub fn random(seed: u64, dtype: DType, device: &Device) -> Self {
        Weights {
            source: Source::Random(Box::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(
                seed,
            )))),
            dtype,
            device: device.clone(),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn is_random(&self) -> bool {
        matches!(self.source, Source::Random(_))
    }

    /// Picks the first prefix (e.g. `transformer.` or ``) under which `probe` exists.
    /// Hub GPT-2 keys have no prefix while `save_pretrained` of the LM-head model adds one.
    pub fn detect_prefix(&mut self, candidates: &[&str], probe: &str) {
        if let Source::Files { index, prefix, .. } = &mut self.source {
            if let Some(p) = candidates
                .iter()
                .find(|p| index.contains_key(&format!("{p}{probe}")))
            {
                *prefix = p.to_string();
            }
        }
    }

    /// Whether a tensor exists (always true for random weights).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Files { index, prefix, .. } => index.contains_key(&format!("{prefix}{name}")),
            Source::Random(_) => true,
        }
    }

    /// Reads tensor `name` (without the prefix), checks its shape, converts it to the model dtype
    /// and device.
    pub fn get(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor, LoadError> {
        match &self.source {
            Source::Files {
                files,
                index,
                prefix,
            } => {
                let full = format!("{prefix}{name}");
                let Some(&i) = index.get(&full) else {
                    let list: Vec<String> =
                        files.iter().map(|(p, _)| p.display().to_string()).collect();
                    return Err(LoadError::MissingTensor {
                        name: full,
                        files: list.join(", "),
                    });
                };
                let (path, st) = &files[i];
                let view = st.get(&full).map_err(|e| LoadError::BadSafetensors {
                    file: path.clone(),
                    reason: e.to_string(),
                })?;
                if view.shape() != shape {
                    return Err(LoadError::ShapeMismatch {
                        name: full,
                        file: path.clone(),
                        expected: shape.to_vec(),
                        got: view.shape().to_vec(),
                    });
                }
                let t = st
                    .load(&full, &Device::Cpu)
                    .map_err(|e| LoadError::BadSafetensors {
                        file: path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
            }
            Source::Random(rng) => {
                let n: usize = shape.iter().product();
                let data: Vec<f32> = match init {
                    Init::Ones => vec![1.0; n],
                    Init::Zeros => vec![0.0; n],
                    Init::Normal(std) => {
                        let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                        (0..n)
                            .map(|_| std * rng.sample::<f32, _>(rand_distr::StandardNormal))
                            .collect()
                    }
                };
                Ok(Tensor::from_vec(data, shape, &Device::Cpu)?
                    .to_dtype(self.dtype)?
                    .to_device(&self.device)?)
            }
        }
    }
}
