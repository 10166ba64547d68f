//! GPT-2 (all sizes: gpt2, gpt2-medium/large/xl, distilgpt2, any `GPT2Config`), with hooks.
//!
//! Pre-LayerNorm blocks: `resid_mid = resid_pre + attn(ln_1(resid_pre))`,
//! `resid_post = resid_mid + mlp(ln_2(resid_mid))`; logits use the embedding matrix (tied `lm_head`).
//! Checkpoint keys are read with or without the `transformer.` prefix; buffers such as
//! `h.N.attn.bias` (the causal mask) are ignored.

use candle_core::{Module, Result, Tensor};
use serde::Deserialize;

use crate::kernels::{self, AttnMask};

use super::hooks::{HookPoint, HookSet};
use super::layers::{embed, Activation, LayerNorm, Linear};
use super::load::{Init, LoadError, Weights};
use super::{ForwardOutput, Recorder};

/// The fields of a Hugging Face `GPT2Config` that change the computation (defaults = gpt2 small).
#[derive(Clone, Debug, Deserialize)]
pub struct Gpt2Config {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_positions")]
    pub n_positions: usize,
    #[serde(default = "d_embd")]
    pub n_embd: usize,
    #[serde(default = "d_layers")]
    pub n_layer: usize,
    #[serde(default = "d_layers")]
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "d_act")]
    pub activation_function: String,
    #[serde(default = "d_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "d_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "d_bos")]
    pub bos_token_id: u32,
    #[serde(default = "d_bos")]
    pub eos_token_id: u32,
    #[serde(default = "d_range")]
    pub initializer_range: f32,
}

fn d_vocab() -> usize {
    50257
}
fn d_positions() -> usize {
    1024
}
fn d_embd() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_act() -> String {
    "gelu_new".into()
}
fn d_eps() -> f64 {
    1e-5
}
fn d_true() -> bool {
    true
}
fn d_bos() -> u32 {
    50256
}
fn d_range() -> f32 {
    0.02
}

impl Gpt2Config {
    pub fn d_mlp(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    pub config: Gpt2Config,
    wte: Tensor, // [vocab, d]
    wpe: Tensor, // [positions, d]
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    act: Activation,
}

impl Gpt2 {
    pub fn load(config: Gpt2Config, w: &mut Weights) -> std::result::Result<Self, LoadError> {
        w.detect_prefix(&["transformer.", ""], "wte.weight");
        let c = &config;
        let (d, m, std) = (c.n_embd, c.d_mlp(), c.initializer_range);
        // GPT-2 scales the residual projections' init by 1/sqrt(2 n_layer).
        let proj_std = std / (2.0 * c.n_layer as f32).sqrt();
        let eps = c.layer_norm_epsilon;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = format!("h.{i}");
            blocks.push(Block {
                ln_1: LayerNorm::load(w, &format!("{p}.ln_1"), d, eps)?,
                c_attn: Linear::load_conv1d(w, &format!("{p}.attn.c_attn"), d, 3 * d, std)?,
                attn_proj: Linear::load_conv1d(w, &format!("{p}.attn.c_proj"), d, d, proj_std)?,
                ln_2: LayerNorm::load(w, &format!("{p}.ln_2"), d, eps)?,
                c_fc: Linear::load_conv1d(w, &format!("{p}.mlp.c_fc"), d, m, std)?,
                mlp_proj: Linear::load_conv1d(w, &format!("{p}.mlp.c_proj"), m, d, proj_std)?,
            });
        }
        let act = Activation::from_hf(&c.activation_function).ok_or_else(|| {
            LoadError::BadConfig {
                file: "config.json".into(),
                reason: format!(
                    "activation_function `{}` is not supported (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu)",
                    c.activation_function
                ),
            }
        })?;
        if c.n_head == 0 || d % c.n_head != 0 {
            return Err(LoadError::BadConfig {
                file: "config.json".into(),
                reason: format!("n_embd {d} is not divisible by n_head {}", c.n_head),
            });
        }
        Ok(Gpt2 {
            wte: w.get("wte.weight", &[c.vocab_size, d], Init::Normal(std))?,
            wpe: w.get("wpe.weight", &[c.n_positions, d], Init::Normal(0.01))?,
            blocks,
            ln_f: LayerNorm::load(w, "ln_f", d, eps)?,
            act,
            config,
        })
    }

    pub fn device(&self) -> candle_core::Device {
        self.wte.device().clone()
    }

    /// Runs the model on right-padded `ids [b, t]` with `mask` rows of 1 (token) / 0 (padding),
    /// recording `hooks`; stops after the last block they need unless `logits` is asked for.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &[Vec<u8>],
        hooks: &HookSet,
        logits: bool,
    ) -> Result<ForwardOutput> {
        self.forward_spliced(ids, mask, hooks, logits, None)
    }

    /// [`Gpt2::forward`] with one hook point's value replaced by `splice`.
    pub fn forward_spliced(
        &self,
        ids: &Tensor,
        mask: &[Vec<u8>],
        hooks: &HookSet,
        logits: bool,
        splice: Option<&super::Splice>,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let (_b, t) = ids.dims2()?;
        let mut rec = Recorder::with_splice(hooks, splice);
        let tok = embed(&self.wte, ids)?; // [b, t, d]
        let pos = self.wpe.narrow(0, 0, t)?.unsqueeze(0)?; // [1, t, d]
        rec.record_with(HookPoint::Embed, || Ok(tok.clone()))?;
        rec.record_with(HookPoint::PosEmbed, || {
            pos.broadcast_as(tok.shape())?.contiguous()
        })?;
        let mut x = kernels::add(&tok, &pos)?; // [b, t, d]

        let n_blocks = if logits {
            c.n_layer
        } else {
            hooks.blocks_needed(c.n_layer)
        };
        let attn_mask = AttnMask {
            causal: true,
            keys: mask.to_vec(),
        };
        for (i, blk) in self.blocks.iter().enumerate().take(n_blocks) {
            x = rec.pass(HookPoint::ResidPre(i), x)?;
            let attn_out = self.attention(blk, &blk.ln_1.forward(&x)?, &attn_mask, i)?;
            let attn_out = rec.pass(HookPoint::AttnOut(i), attn_out)?;
            let resid_mid = rec.pass(HookPoint::ResidMid(i), kernels::add(&x, &attn_out)?)?;
            let pre = blk.c_fc.forward(&blk.ln_2.forward(&resid_mid)?)?; // [b, t, d_mlp]
            let pre = rec.pass(HookPoint::MlpPre(i), pre)?;
            let post = rec.pass(HookPoint::MlpPost(i), self.act.apply(&pre)?)?;
            let mlp_out = rec.pass(HookPoint::MlpOut(i), blk.mlp_proj.forward(&post)?)?; // [b, t, d]
            x = rec.pass(HookPoint::ResidPost(i), kernels::add(&resid_mid, &mlp_out)?)?;
        }
        let mut out_logits = None;
        if n_blocks == c.n_layer && (logits || hooks.contains(HookPoint::LnFinal)) {
            let normed = self.ln_f.forward(&x)?;
            rec.record(HookPoint::LnFinal, &normed);
            if logits {
                let (b, t, d) = normed.dims3()?;
                // Tied lm_head: logits = ln_f(x) wteᵀ.
                let l = normed.reshape((b * t, d))?.matmul(&self.wte.t()?)?;
                out_logits = Some(l.reshape((b, t, c.vocab_size))?);
            }
        }
        Ok(ForwardOutput {
            hooks: rec.finish(),
            logits: out_logits,
        })
    }

    fn attention(&self, blk: &Block, x: &Tensor, mask: &AttnMask, layer: usize) -> Result<Tensor> {
        let c = &self.config;
        let d = x.dim(2)?;
        let h = c.n_head;
        let qkv = blk.c_attn.forward(x)?; // [b, t, 3d]
        let mut scale = if c.scale_attn_weights {
            1.0 / ((d / h) as f64).sqrt()
        } else {
            1.0
        };
        if c.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        // q, k, v are strided views into qkv: no copies.
        let (q, k, v) = (
            qkv.narrow(2, 0, d)?,
            qkv.narrow(2, d, d)?,
            qkv.narrow(2, 2 * d, d)?,
        );
        let out = kernels::attention(&q, &k, &v, h, scale, mask)?; // [b, t, d]
        blk.attn_proj.forward(&out)
    }
}
