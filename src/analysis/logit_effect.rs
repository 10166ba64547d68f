//! The logit effect of a unit (as sae_vis shows it): its output direction in the residual stream
//! times the unembedding, `dir · W_U`, and the tokens it promotes and suppresses most. The
//! direction of an SAE feature is its decoder row; of an MLP neuron (`mlp.hook_post`) its row of
//! the MLP output weights; a feature of an SAE on `mlp.hook_post` goes through both. A neuron of
//! a residual hook is a basis vector: its effect is the unembedding's column. GPT-2 only (tied
//! unembedding = `wte`); encoder models have no unembedding and get none.

use candle_core::{DType, Device};

use crate::corpus::token_text::TokenText;
use crate::hub::HubOptions;
use crate::models::gpt2::Gpt2Config;
use crate::models::load::{read_json, resolve, Init, LoadError, Weights};
use crate::store::ModelInfo;

/// Tokens listed per side (promoted, suppressed).
pub const TOP_TOKENS: usize = 10;

/// A unit's most promoted and most suppressed tokens: (token id, logit change per unit of
/// activation), strongest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TopTokens {
    pub promoted: Vec<(u32, f32)>,
    pub suppressed: Vec<(u32, f32)>,
}

/// GPT-2's unembedding and MLP output weights of one layer, and the token texts.
pub struct Unembedding {
    /// `[vocab, d]` (the tied `wte`).
    pub w_u: Vec<f32>,
    pub vocab: usize,
    pub d: usize,
    /// `[d_mlp, d]`: the hook's layer's `mlp.c_proj` weight, for `mlp.hook_post` hooks.
    pub w_out: Option<Vec<f32>>,
    pub tokens: TokenText,
}

/// `dirs [n, d] · w_u [vocab, d]ᵀ`, the `k` highest and lowest per row (blocks of rows through
/// the GEMM: memory one block × vocab).
pub fn logit_effect(dirs: &[f32], d: usize, w_u: &[f32], vocab: usize, k: usize) -> Vec<TopTokens> {
    const BLOCK: usize = 64;
    let n = dirs.len() / d.max(1);
    let mut out = Vec::with_capacity(n);
    let mut logits = vec![0f32; BLOCK * vocab];
    for start in (0..n).step_by(BLOCK) {
        let b = BLOCK.min(n - start);
        crate::kernels::matmul(
            (b, vocab, d),
            &mut logits,
            false,
            &dirs[start * d..],
            (d, 1),
            w_u,
            (1, d),
        );
        for row in logits[..b * vocab].chunks(vocab) {
            let mut ids: Vec<u32> = (0..vocab as u32).collect();
            let by =
                |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            let k = k.min(vocab);
            let top = |ids: &mut Vec<u32>, f: &dyn Fn(&u32, &u32) -> std::cmp::Ordering| {
                if k > 0 && k < ids.len() {
                    ids.select_nth_unstable_by(k - 1, f);
                }
                let mut t: Vec<u32> = ids[..k].to_vec();
                t.sort_by(f);
                t.into_iter()
                    .map(|i| (i, row[i as usize]))
                    .collect::<Vec<_>>()
            };
            let promoted = top(&mut ids, &by);
            let low =
                |a: &u32, b: &u32| row[*a as usize].total_cmp(&row[*b as usize]).then(a.cmp(b));
            let suppressed = top(&mut ids, &low);
            out.push(TopTokens {
                promoted,
                suppressed,
            });
        }
    }
    out
}

/// `a [n, m] · b [m, d]`.
pub fn matmul_rows(a: &[f32], m: usize, b: &[f32], d: usize) -> Vec<f32> {
    let n = a.len() / m.max(1);
    let mut out = vec![0f32; n * d];
    crate::kernels::matmul((n, d, m), &mut out, false, a, (m, 1), b, (d, 1));
    out
}

/// The layer of a `blocks.L.mlp.hook_post` hook.
fn mlp_post_layer(hook: &str) -> Option<usize> {
    hook.strip_prefix("blocks.")?
        .strip_suffix(".mlp.hook_post")?
        .parse()
        .ok()
}

/// Whether a hook's dimensions are the residual stream's (so a direction there meets `W_U`).
fn residual_hook(hook: &str) -> bool {
    ["hook_embed", "hook_pos_embed", "ln_final.hook_normalized"].contains(&hook)
        || [
            "hook_resid_pre",
            "hook_resid_mid",
            "hook_resid_post",
            "hook_attn_out",
            "hook_mlp_out",
        ]
        .iter()
        .any(|s| hook.starts_with("blocks.") && hook.ends_with(s))
}

/// GPT-2's unembedding for units of `hook`, or why there is none (a line for the report).
pub fn load_unembedding(model: &ModelInfo, hook: &str) -> Result<Unembedding, String> {
    match model.arch.as_str() {
        "gpt2" => {}
        "synthetic" => return Err("synthetic activations: no model, no unembedding".into()),
        arch => return Err(format!("{arch} is an encoder model without an unembedding")),
    }
    if model.random_weights {
        return Err("the model's weights are random (no weights file to read W_U from)".into());
    }
    let layer = mlp_post_layer(hook);
    if layer.is_none() && !residual_hook(hook) {
        return Err(format!(
            "{hook} is neither the residual stream nor mlp.hook_post"
        ));
    }
    let load = || -> Result<Unembedding, LoadError> {
        let files = resolve(&model.id, &HubOptions::default(), true)?;
        let c: Gpt2Config = read_json(&files.config)?;
        let mut w = Weights::from_files(&files.weights, DType::F32, &Device::Cpu)?;
        w.detect_prefix(&["transformer.", ""], "wte.weight");
        let flat = |t: candle_core::Tensor| -> Result<Vec<f32>, LoadError> {
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let w_u = flat(w.get("wte.weight", &[c.vocab_size, c.n_embd], Init::Zeros)?)?;
        let w_out = match layer {
            Some(l) => Some(flat(w.get(
                &format!("h.{l}.mlp.c_proj.weight"),
                &[c.d_mlp(), c.n_embd],
                Init::Zeros,
            )?)?),
            None => None,
        };
        let tokenizer = files.tokenizer.ok_or_else(|| LoadError::BadConfig {
            file: files.config.clone(),
            reason: "no tokenizer.json beside the model".into(),
        })?;
        let tokens = TokenText::from_file(&tokenizer).map_err(|e| LoadError::BadConfig {
            file: tokenizer.clone(),
            reason: e.to_string(),
        })?;
        Ok(Unembedding {
            w_u,
            vocab: c.vocab_size,
            d: c.n_embd,
            w_out,
            tokens,
        })
    };
    load().map_err(|e| format!("model {}: {e}", model.id))
}

impl Unembedding {
    /// The logit effect of SAE features with decoder rows `w_dec [n, d_in]` on this hook.
    pub fn of_features(&self, w_dec: &[f32], d_in: usize) -> Vec<TopTokens> {
        match &self.w_out {
            Some(w_out) => {
                let dirs = matmul_rows(w_dec, d_in, w_out, self.d);
                logit_effect(&dirs, self.d, &self.w_u, self.vocab, TOP_TOKENS)
            }
            None => logit_effect(w_dec, self.d, &self.w_u, self.vocab, TOP_TOKENS),
        }
    }

    /// The logit effect of the hook's `units` neurons.
    pub fn of_neurons(&self, units: usize) -> Vec<TopTokens> {
        match &self.w_out {
            Some(w_out) => logit_effect(w_out, self.d, &self.w_u, self.vocab, TOP_TOKENS),
            None => {
                let mut eye = vec![0f32; units * self.d];
                for i in 0..units.min(self.d) {
                    eye[i * self.d + i] = 1.0;
                }
                logit_effect(&eye, self.d, &self.w_u, self.vocab, TOP_TOKENS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_effect_on_a_hand_made_case() {
        // d = 2, vocab = 4: W_U rows (token embeddings) e0 = (1, 0), e1 = (0, 1), e2 = (-1, 0),
        // e3 = (1, 1). Direction (2, -1): logits 2, -1, -2, 1.
        let w_u = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 1.0, 1.0];
        let t = logit_effect(&[2.0, -1.0, 0.0, 3.0], 2, &w_u, 4, 2);
        assert_eq!(t[0].promoted, vec![(0, 2.0), (3, 1.0)]);
        assert_eq!(t[0].suppressed, vec![(2, -2.0), (1, -1.0)]);
        // Direction (0, 3): logits 0, 3, 0, 3 (ties: lower id first).
        assert_eq!(t[1].promoted, vec![(1, 3.0), (3, 3.0)]);
        assert_eq!(t[1].suppressed, vec![(0, 0.0), (2, 0.0)]);
        // Through an MLP output matrix [m = 3, d = 2]: neuron rows (1,0), (0,1), (1,1).
        let w_out = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let dirs = matmul_rows(&[0.0, 0.0, 2.0], 3, &w_out, 2);
        assert_eq!(dirs, vec![2.0, 2.0]);
    }

    #[test]
    fn hooks_that_meet_the_unembedding() {
        assert_eq!(mlp_post_layer("blocks.6.mlp.hook_post"), Some(6));
        assert_eq!(mlp_post_layer("blocks.6.mlp.hook_pre"), None);
        assert!(residual_hook("blocks.6.hook_resid_post"));
        assert!(!residual_hook("blocks.6.mlp.hook_pre"));
    }
}
