//! BERT encoders (`BertModel` checkpoints: bert-base-uncased, all-MiniLM-L6-v2, …), with hooks.
//!
//! The same post-LayerNorm computation as DistilBERT, so BERT loads into [`DistilBert`]'s struct
//! and shares its forward: `resid_mid = attention.output.LayerNorm(resid_pre + attn)`,
//! `resid_post = output.LayerNorm(resid_mid + ffn)`. Differences handled here: the key names, the
//! configurable LayerNorm eps, and the token-type embedding (every token is type 0, Hugging
//! Face's default, so its row 0 is added to the embeddings). Keys are read with or without the
//! `bert.` prefix (`BertForMaskedLM` and friends carry it); the pooler and any task head are not
//! used, and buffers such as `embeddings.position_ids` are ignored.

use serde::Deserialize;

use super::distilbert::{Block, DistilBert, DistilBertConfig};
use super::layers::{Activation, LayerNorm, Linear};
use super::load::{Init, LoadError, Weights};

/// The fields of a Hugging Face `BertConfig` that change the computation
/// (defaults = bert-base-uncased).
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "d_range")]
    pub initializer_range: f32,
    #[serde(default = "d_pos_type")]
    pub position_embedding_type: String,
}

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_intermediate() -> usize {
    3072
}
fn d_act() -> String {
    "gelu".into()
}
fn d_positions() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_range() -> f32 {
    0.02
}
fn d_pos_type() -> String {
    "absolute".into()
}

fn bad(reason: String) -> LoadError {
    LoadError::BadConfig {
        file: "config.json".into(),
        reason,
    }
}

/// Loads a `BertModel` checkpoint into the shared post-LayerNorm encoder.
pub fn load(c: BertConfig, w: &mut Weights) -> Result<DistilBert, LoadError> {
    w.detect_prefix(&["bert.", ""], "embeddings.word_embeddings.weight");
    let (d, m, std, eps) = (
        c.hidden_size,
        c.intermediate_size,
        c.initializer_range,
        c.layer_norm_eps,
    );
    if c.num_attention_heads == 0 || d % c.num_attention_heads != 0 {
        return Err(bad(format!(
            "hidden_size {d} is not divisible by num_attention_heads {}",
            c.num_attention_heads
        )));
    }
    if c.position_embedding_type != "absolute" {
        return Err(bad(format!(
            "position_embedding_type `{}` is not supported (only absolute)",
            c.position_embedding_type
        )));
    }
    if c.type_vocab_size == 0 {
        return Err(bad("type_vocab_size is 0".into()));
    }
    let act = Activation::from_hf(&c.hidden_act).ok_or_else(|| {
        bad(format!(
            "hidden_act `{}` is not supported (gelu, gelu_new, relu)",
            c.hidden_act
        ))
    })?;
    let mut blocks = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        let lin = |name: &str, d_in, d_out| {
            Linear::load_linear(w, &format!("{p}.{name}"), d_in, d_out, std)
        };
        blocks.push(Block {
            qkv: Linear::concat(&[
                lin("attention.self.query", d, d)?,
                lin("attention.self.key", d, d)?,
                lin("attention.self.value", d, d)?,
            ])?,
            out_lin: lin("attention.output.dense", d, d)?,
            sa_layer_norm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), d, eps)?,
            lin1: lin("intermediate.dense", d, m)?,
            lin2: lin("output.dense", m, d)?,
            output_layer_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), d, eps)?,
        });
    }
    let token_types = w.get(
        "embeddings.token_type_embeddings.weight",
        &[c.type_vocab_size, d],
        Init::Normal(std),
    )?;
    let token_type = token_types.get(0)?; // [d]
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
        token_type: Some(token_type),
        embed_ln: LayerNorm::load(w, "embeddings.LayerNorm", d, eps)?,
        blocks,
        act,
        config: DistilBertConfig {
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
            dim: d,
            n_layers: c.num_hidden_layers,
            n_heads: c.num_attention_heads,
            hidden_dim: m,
            activation: c.hidden_act,
            pad_token_id: c.pad_token_id,
            initializer_range: std,
        },
    })
}
