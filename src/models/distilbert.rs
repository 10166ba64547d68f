//! DistilBERT (distilbert-base-uncased and any `DistilBertConfig`), with hooks.
//!
//! Post-LayerNorm blocks: `resid_mid = sa_layer_norm(resid_pre + attn(resid_pre))`,
//! `resid_post = output_layer_norm(resid_mid + ffn(resid_mid))`, erf GELU, LayerNorm eps 1e-12
//! (hard-coded in Hugging Face's implementation). Keys are read with or without the `distilbert.`
//! prefix (hub checkpoints of `DistilBertForMaskedLM` carry it; the MLM head is ignored).
//! Attention masks use 1 = token, 0 = padding, as Hugging Face does.

use candle_core::{Module, Result, Tensor};
use serde::Deserialize;

use crate::kernels::{self, AttnMask};

use super::hooks::{HookPoint, HookSet};
use super::layers::{embed, Activation, LayerNorm, Linear};
use super::load::{Init, LoadError, Weights};
use super::{ForwardOutput, Recorder};

const LN_EPS: f64 = 1e-12;

/// The fields of a Hugging Face `DistilBertConfig` that change the computation
/// (defaults = distilbert-base-uncased).
#[derive(Clone, Debug, Deserialize)]
pub struct DistilBertConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_dim")]
    pub dim: usize,
    #[serde(default = "d_layers")]
    pub n_layers: usize,
    #[serde(default = "d_heads")]
    pub n_heads: usize,
    #[serde(default = "d_hidden")]
    pub hidden_dim: usize,
    #[serde(default = "d_act")]
    pub activation: String,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "d_range")]
    pub initializer_range: f32,
}

fn d_vocab() -> usize {
    30522
}
fn d_positions() -> usize {
    512
}
fn d_dim() -> usize {
    768
}
fn d_layers() -> usize {
    6
}
fn d_heads() -> usize {
    12
}
fn d_hidden() -> usize {
    3072
}
fn d_act() -> String {
    "gelu".into()
}
fn d_range() -> f32 {
    0.02
}

pub(super) struct Block {
    /// q_lin, k_lin and v_lin side by side: `[d, 3d]`.
    pub(super) qkv: Linear,
    pub(super) out_lin: Linear,
    pub(super) sa_layer_norm: LayerNorm,
    pub(super) lin1: Linear,
    pub(super) lin2: Linear,
    pub(super) output_layer_norm: LayerNorm,
}

/// A post-LayerNorm encoder: DistilBERT, and BERT (loaded by `bert.rs` into the same struct,
/// with its token-type embedding).
pub struct DistilBert {
    pub config: DistilBertConfig,
    pub(super) word_embeddings: Tensor,     // [vocab, d]
    pub(super) position_embeddings: Tensor, // [positions, d]
    /// BERT only: the token-type-0 embedding `[d]`, added with the positions (every token is
    /// type 0, Hugging Face's default).
    pub(super) token_type: Option<Tensor>,
    pub(super) embed_ln: LayerNorm,
    pub(super) blocks: Vec<Block>,
    pub(super) act: Activation,
}

impl DistilBert {
    pub fn load(config: DistilBertConfig, w: &mut Weights) -> std::result::Result<Self, LoadError> {
        w.detect_prefix(&["distilbert.", ""], "embeddings.word_embeddings.weight");
        let c = &config;
        let (d, m, std) = (c.dim, c.hidden_dim, c.initializer_range);
        if c.n_heads == 0 || d % c.n_heads != 0 {
            return Err(LoadError::BadConfig {
                file: "config.json".into(),
                reason: format!("dim {d} is not divisible by n_heads {}", c.n_heads),
            });
        }
        let act = Activation::from_hf(&c.activation).ok_or_else(|| LoadError::BadConfig {
            file: "config.json".into(),
            reason: format!(
                "activation `{}` is not supported (gelu, relu)",
                c.activation
            ),
        })?;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let p = format!("transformer.layer.{i}");
            let lin = |name: &str, d_in, d_out| {
                Linear::load_linear(w, &format!("{p}.{name}"), d_in, d_out, std)
            };
            blocks.push(Block {
                qkv: Linear::concat(&[
                    lin("attention.q_lin", d, d)?,
                    lin("attention.k_lin", d, d)?,
                    lin("attention.v_lin", d, d)?,
                ])?,
                out_lin: lin("attention.out_lin", d, d)?,
                sa_layer_norm: LayerNorm::load(w, &format!("{p}.sa_layer_norm"), d, LN_EPS)?,
                lin1: lin("ffn.lin1", d, m)?,
                lin2: lin("ffn.lin2", m, d)?,
                output_layer_norm: LayerNorm::load(
                    w,
                    &format!("{p}.output_layer_norm"),
                    d,
                    LN_EPS,
                )?,
            });
        }
        Ok(DistilBert {
            word_embeddings: w.get(
                "embeddings.word_embeddings.weight",
                &[c.vocab_size, d],
                Init::Normal(std),
            )?,
            position_embeddings: w.get(
                "embeddings.position_embeddings.weight",
                &[c.max_position_embeddings, d],
                Init::Normal(std),
            )?,
            token_type: None,
            embed_ln: LayerNorm::load(w, "embeddings.LayerNorm", d, LN_EPS)?,
            blocks,
            act,
            config,
        })
    }

    pub fn device(&self) -> candle_core::Device {
        self.word_embeddings.device().clone()
    }

    /// Runs the encoder on right-padded `ids [b, t]` with `mask` rows of 1 (token) / 0 (padding),
    /// recording `hooks`; stops after the last block they need.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &[Vec<u8>],
        hooks: &HookSet,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let (_b, t) = ids.dims2()?;
        let mut rec = Recorder::new(hooks);
        let tok = embed(&self.word_embeddings, ids)?; // [b, t, d]
        let pos = self.position_embeddings.narrow(0, 0, t)?.unsqueeze(0)?; // [1, t, d]
        rec.record_with(HookPoint::Embed, || Ok(tok.clone()))?;
        rec.record_with(HookPoint::PosEmbed, || {
            pos.broadcast_as(tok.shape())?.contiguous()
        })?;
        let n_blocks = hooks.blocks_needed(c.n_layers);
        if n_blocks == 0 {
            return Ok(ForwardOutput {
                hooks: rec.finish(),
                logits: None,
            });
        }
        let mut sum = kernels::add(&tok, &pos)?; // [b, t, d]
        if let Some(tt) = &self.token_type {
            sum = kernels::add(&sum, tt)?;
        }
        let mut x = self.embed_ln.forward(&sum)?; // [b, t, d]
        let key_mask = AttnMask {
            causal: false,
            keys: mask.to_vec(),
        };
        let scale = 1.0 / ((c.dim / c.n_heads) as f64).sqrt();
        for (i, blk) in self.blocks.iter().enumerate().take(n_blocks) {
            rec.record(HookPoint::ResidPre(i), &x);
            let qkv = blk.qkv.forward(&x)?; // [b, t, 3d]
            let d = c.dim;
            // q, k, v are strided views into qkv: no copies.
            let (q, k, v) = (
                qkv.narrow(2, 0, d)?,
                qkv.narrow(2, d, d)?,
                qkv.narrow(2, 2 * d, d)?,
            );
            let heads = kernels::attention(&q, &k, &v, c.n_heads, scale, &key_mask)?; // [b, t, d]
            let attn_out = blk.out_lin.forward(&heads)?;
            rec.record(HookPoint::AttnOut(i), &attn_out);
            let resid_mid = blk.sa_layer_norm.forward(&kernels::add(&attn_out, &x)?)?;
            rec.record(HookPoint::ResidMid(i), &resid_mid);
            let pre = blk.lin1.forward(&resid_mid)?; // [b, t, d_mlp]
            rec.record(HookPoint::MlpPre(i), &pre);
            let post = self.act.apply(&pre)?;
            rec.record(HookPoint::MlpPost(i), &post);
            let mlp_out = blk.lin2.forward(&post)?; // [b, t, d]
            rec.record(HookPoint::MlpOut(i), &mlp_out);
            x = blk
                .output_layer_norm
                .forward(&kernels::add(&mlp_out, &resid_mid)?)?;
            rec.record(HookPoint::ResidPost(i), &x);
        }
        if n_blocks == c.n_layers {
            // No final LayerNorm: the last block's output is already normalised.
            rec.record(HookPoint::LnFinal, &x);
        }
        Ok(ForwardOutput {
            hooks: rec.finish(),
            logits: None,
        })
    }
}
