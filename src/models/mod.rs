//! Hooked transformer models written on candle: GPT-2, DistilBERT and BERT. The CPU kernels
//! their forward pass runs on (GEMM wrappers, LayerNorm, attention, GELU, row kernels) are in
//! [`crate::kernels`].
//!
//! [`Model::load`] reads `config.json`, picks the architecture ([`Arch`]) from `model_type`, and
//! builds the model from safetensors or random weights. [`Model::forward`] records any set of
//! hooks (see [`hooks`]) and stops after the last block it needs; on the CPU it splits a batch by
//! sequence across threads. [`Model::logits_with_splice`] runs GPT-2 with one hook's value
//! replaced ([`Splice`]: an SAE's reconstruction, zeros), for `sae::downstream`.
//!
//! - models: [`gpt2`] (pre-LayerNorm, tied `lm_head`), [`distilbert`] (post-LayerNorm), [`bert`]
//!   (loads into DistilBERT's struct and shares its forward), built from [`layers`];
//! - names and files: [`hooks`] (TransformerLens hook names, the one table of what each is),
//!   [`load`] (local folder, config file or hub repo; both key prefixes; checked shapes),
//!   [`tokenizer`] (Hugging Face `tokenizer.json`);
//! - forward on the CPU: `split` (data-parallel forward: each thread runs its own sequences; also
//!   the worker pools of `extract`).
//!
//! Design and numerical traps: docs/design.md.

pub mod bert;
pub mod distilbert;
pub mod gpt2;
pub mod hooks;
pub mod layers;
pub mod load;
pub(crate) mod split;
pub mod tokenizer;

use candle_core::{DType, Device, Result, Tensor};

use distilbert::{DistilBert, DistilBertConfig};
use gpt2::{Gpt2, Gpt2Config};
use hooks::{HookPoint, HookSet};
use load::{LoadError, ModelFiles, Weights};

/// Model families unravel can hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Gpt2,
    DistilBert,
    Bert,
}

impl Arch {
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Gpt2 => "gpt2",
            Arch::DistilBert => "distilbert",
            Arch::Bert => "bert",
        }
    }

    /// Decoder models take `<|endoftext|>` as BOS; encoders wrap text in `[CLS] … [SEP]`.
    pub fn is_causal(&self) -> bool {
        matches!(self, Arch::Gpt2)
    }
}

/// The recorded hooks of one forward pass, in forward order, each `[b, t, d]`.
pub struct ForwardOutput {
    pub hooks: Vec<(HookPoint, Tensor)>,
    /// `[b, t, vocab]` when asked for (GPT-2 only).
    pub logits: Option<Tensor>,
}

impl ForwardOutput {
    pub fn get(&self, p: HookPoint) -> Option<&Tensor> {
        self.hooks.iter().find(|(q, _)| *q == p).map(|(_, t)| t)
    }
}

/// Collects the requested hooks during a forward pass (cheap clones of reference-counted tensors).
pub(crate) struct Recorder<'a> {
    wanted: &'a HookSet,
    out: Vec<(HookPoint, Tensor)>,
    splice: Option<&'a Splice<'a>>,
}

/// Replaces the value at one hook point during a forward pass (e.g. with an SAE's
/// reconstruction, or zeros): the rest of the model runs on the replacement.
pub struct Splice<'a> {
    pub point: HookPoint,
    /// Maps the hook's `[b, t, d]` value to its replacement (same shape).
    pub replace: &'a dyn Fn(&Tensor) -> Result<Tensor>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(wanted: &'a HookSet) -> Self {
        Recorder {
            wanted,
            out: Vec::with_capacity(wanted.len()),
            splice: None,
        }
    }

    pub(crate) fn with_splice(wanted: &'a HookSet, splice: Option<&'a Splice<'a>>) -> Self {
        Recorder {
            splice,
            ..Recorder::new(wanted)
        }
    }

    /// Records `t` at `p` (when wanted) and returns the value the model continues with: `t`,
    /// or the splice's replacement at its point (recorded after replacement).
    pub(crate) fn pass(&mut self, p: HookPoint, t: Tensor) -> Result<Tensor> {
        let t = match self.splice {
            Some(s) if s.point == p => (s.replace)(&t)?,
            _ => t,
        };
        self.record(p, &t);
        Ok(t)
    }

    pub(crate) fn record(&mut self, p: HookPoint, t: &Tensor) {
        if self.wanted.contains(p) {
            self.out.push((p, t.clone()));
        }
    }

    /// Records a value that costs something to build, only when it is wanted.
    pub(crate) fn record_with(
        &mut self,
        p: HookPoint,
        f: impl FnOnce() -> Result<Tensor>,
    ) -> Result<()> {
        if self.wanted.contains(p) {
            self.out.push((p, f()?));
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<(HookPoint, Tensor)> {
        self.out
    }
}

/// How to build a model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    pub device: Device,
    pub dtype: DType,
    /// Random weights from this seed instead of the checkpoint (`--random-weights`).
    pub random_seed: Option<u64>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            random_seed: None,
        }
    }
}

pub enum Model {
    Gpt2(Gpt2),
    DistilBert(DistilBert),
    /// BERT loads into the shared post-LayerNorm encoder.
    Bert(DistilBert),
}

#[derive(serde::Deserialize)]
struct ModelType {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

impl Model {
    /// Builds a model from its files: architecture from `config.json`, weights from safetensors
    /// (or random when `opts.random_seed` is set).
    pub fn load(files: &ModelFiles, opts: &ModelOptions) -> std::result::Result<Model, LoadError> {
        let arch = detect_arch(&files.config)?;
        let mut w = match opts.random_seed {
            Some(seed) => Weights::random(seed, opts.dtype, &opts.device),
            None => Weights::from_files(&files.weights, opts.dtype, &opts.device)?,
        };
        let named = |e: LoadError| match e {
            LoadError::BadConfig { file, reason } if file.as_os_str() == "config.json" => {
                LoadError::BadConfig {
                    file: files.config.clone(),
                    reason,
                }
            }
            e => e,
        };
        Ok(match arch {
            Arch::Gpt2 => {
                let cfg: Gpt2Config = load::read_json(&files.config)?;
                Model::Gpt2(Gpt2::load(cfg, &mut w).map_err(named)?)
            }
            Arch::DistilBert => {
                let cfg: DistilBertConfig = load::read_json(&files.config)?;
                Model::DistilBert(DistilBert::load(cfg, &mut w).map_err(named)?)
            }
            Arch::Bert => {
                let cfg: bert::BertConfig = load::read_json(&files.config)?;
                Model::Bert(bert::load(cfg, &mut w).map_err(named)?)
            }
        })
    }

    pub fn arch(&self) -> Arch {
        match self {
            Model::Gpt2(_) => Arch::Gpt2,
            Model::DistilBert(_) => Arch::DistilBert,
            Model::Bert(_) => Arch::Bert,
        }
    }

    pub fn n_layers(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.n_layer,
            Model::DistilBert(m) | Model::Bert(m) => m.config.n_layers,
        }
    }

    pub fn d_model(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.n_embd,
            Model::DistilBert(m) | Model::Bert(m) => m.config.dim,
        }
    }

    pub fn d_mlp(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.d_mlp(),
            Model::DistilBert(m) | Model::Bert(m) => m.config.hidden_dim,
        }
    }

    /// Width of a hook's value.
    pub fn hook_dim(&self, p: HookPoint) -> usize {
        match p.width() {
            hooks::HookWidth::Model => self.d_model(),
            hooks::HookWidth::Mlp => self.d_mlp(),
        }
    }

    pub fn max_positions(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.n_positions,
            Model::DistilBert(m) | Model::Bert(m) => m.config.max_position_embeddings,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Model::Gpt2(m) => m.config.vocab_size,
            Model::DistilBert(m) | Model::Bert(m) => m.config.vocab_size,
        }
    }

    /// Token used to pad batches (never attended to).
    pub fn pad_token_id(&self) -> u32 {
        match self {
            Model::Gpt2(m) => m.config.eos_token_id,
            Model::DistilBert(m) | Model::Bert(m) => m.config.pad_token_id,
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        match self {
            Model::Gpt2(m) => m.device(),
            Model::DistilBert(m) | Model::Bert(m) => m.device(),
        }
    }

    pub fn has_logits(&self) -> bool {
        matches!(self, Model::Gpt2(_))
    }

    /// Runs right-padded `ids [b, t]` (u32) with `mask` (1 = token, 0 = padding) and records `hooks`.
    /// On the CPU, a batch of at least one sequence per thread is split by sequence across threads.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &[Vec<u8>],
        hooks: &HookSet,
        logits: bool,
    ) -> Result<ForwardOutput> {
        let forward = |ids: &Tensor, mask: &[Vec<u8>]| match self {
            Model::Gpt2(m) => m.forward(ids, mask, hooks, logits),
            Model::DistilBert(m) | Model::Bert(m) => m.forward(ids, mask, hooks),
        };
        split::by_sequence(ids, mask, forward).unwrap_or_else(|| forward(ids, mask))
    }

    /// GPT-2 logits `[b, t, vocab]` with one hook point's value replaced (see [`Splice`]).
    /// DistilBERT has no language-model head here, so it has no logits to compare.
    pub fn logits_with_splice(
        &self,
        ids: &Tensor,
        mask: &[Vec<u8>],
        splice: Option<&Splice>,
    ) -> Result<Tensor> {
        match self {
            Model::Gpt2(m) => {
                let none = HookSet::default();
                let out = m.forward_spliced(ids, mask, &none, true, splice)?;
                out.logits
                    .ok_or_else(|| candle_core::Error::Msg("no logits".into()))
            }
            Model::DistilBert(_) | Model::Bert(_) => Err(candle_core::Error::Msg(
                "DistilBERT has no language-model head: CE/KL evaluation needs a GPT-2 model"
                    .into(),
            )),
        }
    }
}

fn detect_arch(config: &std::path::Path) -> std::result::Result<Arch, LoadError> {
    let t: ModelType = load::read_json(config)?;
    let arch_names = t.architectures.join(",");
    let name = t.model_type.unwrap_or_default();
    match name.as_str() {
        "gpt2" => Ok(Arch::Gpt2),
        "distilbert" => Ok(Arch::DistilBert),
        "bert" => Ok(Arch::Bert),
        _ if arch_names.starts_with("GPT2") => Ok(Arch::Gpt2),
        _ if arch_names.starts_with("DistilBert") => Ok(Arch::DistilBert),
        _ if arch_names.starts_with("Bert") => Ok(Arch::Bert),
        other => Err(LoadError::BadConfig {
            file: config.into(),
            reason: format!(
                "model_type `{other}` is not supported; unravel hooks gpt2, distilbert and bert models"
            ),
        }),
    }
}
