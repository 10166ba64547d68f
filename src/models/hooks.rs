//! Hook points: TransformerLens names, defined once for every model.
//!
//! | hook | GPT-2 (pre-LayerNorm) | DistilBERT (post-LayerNorm) |
//! |---|---|---|
//! | `hook_embed` | `wte[token]` | `word_embeddings[token]` |
//! | `hook_pos_embed` | `wpe[position]` | `position_embeddings[position]` |
//! | `blocks.{i}.hook_resid_pre` | input of block i (`embed + pos_embed` for i = 0) | input of block i (block 0: `LayerNorm(embed + pos_embed)`) |
//! | `blocks.{i}.hook_attn_out` | attention output after `c_proj` (with bias) | attention output after `out_lin`, before the residual add |
//! | `blocks.{i}.hook_resid_mid` | `resid_pre + attn_out` | `sa_layer_norm(resid_pre + attn_out)` |
//! | `blocks.{i}.mlp.hook_pre` | `c_fc` output (pre-activation) | `lin1` output (pre-activation) |
//! | `blocks.{i}.mlp.hook_post` | the neurons: `gelu_new(hook_pre)` (tanh GELU) | the neurons: `gelu(hook_pre)` (erf GELU) |
//! | `blocks.{i}.hook_mlp_out` | MLP output after `c_proj` | `lin2` output, before the residual add |
//! | `blocks.{i}.hook_resid_post` | `resid_mid + mlp_out` | `output_layer_norm(resid_mid + mlp_out)` |
//! | `ln_final.hook_normalized` | `ln_f(last resid_post)` = HF `last_hidden_state` | no final LayerNorm: the last `resid_post` = HF `last_hidden_state` |
//!
//! BERT (`BertModel`) is post-LayerNorm like DistilBERT and uses the DistilBERT column with its own
//! module names: `q_lin/k_lin/v_lin` → `attention.self.{query,key,value}`, `out_lin` →
//! `attention.output.dense`, `sa_layer_norm` → `attention.output.LayerNorm`, `lin1` →
//! `intermediate.dense`, `lin2` → `output.dense`, `output_layer_norm` → `output.LayerNorm`; its
//! block-0 input also adds the token-type-0 embedding inside the LayerNorm (`hook_embed` and
//! `hook_pos_embed` stay the word and position embeddings alone).
//!
//! `ln_final.hook_normalized` is TransformerLens's value *after* the LayerNorm's weight and bias.
//! Hugging Face's `hidden_states[i]` is `blocks.{i}.hook_resid_pre` for both models, except that
//! GPT-2's last entry has `ln_f` applied (TransformerLens's `resid_post` does not).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

/// One place in the forward pass whose value can be recorded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HookPoint {
    Embed,
    PosEmbed,
    ResidPre(usize),
    AttnOut(usize),
    ResidMid(usize),
    MlpPre(usize),
    MlpPost(usize),
    MlpOut(usize),
    ResidPost(usize),
    LnFinal,
}

/// Which width a hook has: the residual stream or the MLP neurons.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HookWidth {
    Model,
    Mlp,
}

impl HookPoint {
    /// Every hook point of a model with `n_layers` blocks, in forward order.
    pub fn all(n_layers: usize) -> Vec<HookPoint> {
        let mut all = vec![HookPoint::Embed, HookPoint::PosEmbed];
        for i in 0..n_layers {
            all.extend([
                HookPoint::ResidPre(i),
                HookPoint::AttnOut(i),
                HookPoint::ResidMid(i),
                HookPoint::MlpPre(i),
                HookPoint::MlpPost(i),
                HookPoint::MlpOut(i),
                HookPoint::ResidPost(i),
            ]);
        }
        all.push(HookPoint::LnFinal);
        all
    }

    /// The TransformerLens name, e.g. `blocks.3.mlp.hook_post`.
    pub fn name(&self) -> String {
        match self {
            HookPoint::Embed => "hook_embed".into(),
            HookPoint::PosEmbed => "hook_pos_embed".into(),
            HookPoint::ResidPre(i) => format!("blocks.{i}.hook_resid_pre"),
            HookPoint::AttnOut(i) => format!("blocks.{i}.hook_attn_out"),
            HookPoint::ResidMid(i) => format!("blocks.{i}.hook_resid_mid"),
            HookPoint::MlpPre(i) => format!("blocks.{i}.mlp.hook_pre"),
            HookPoint::MlpPost(i) => format!("blocks.{i}.mlp.hook_post"),
            HookPoint::MlpOut(i) => format!("blocks.{i}.hook_mlp_out"),
            HookPoint::ResidPost(i) => format!("blocks.{i}.hook_resid_post"),
            HookPoint::LnFinal => "ln_final.hook_normalized".into(),
        }
    }

    /// The block this hook belongs to, if any.
    pub fn block(&self) -> Option<usize> {
        match *self {
            HookPoint::Embed | HookPoint::PosEmbed | HookPoint::LnFinal => None,
            HookPoint::ResidPre(i)
            | HookPoint::AttnOut(i)
            | HookPoint::ResidMid(i)
            | HookPoint::MlpPre(i)
            | HookPoint::MlpPost(i)
            | HookPoint::MlpOut(i)
            | HookPoint::ResidPost(i) => Some(i),
        }
    }

    pub fn width(&self) -> HookWidth {
        match self {
            HookPoint::MlpPre(_) | HookPoint::MlpPost(_) => HookWidth::Mlp,
            _ => HookWidth::Model,
        }
    }

    /// Position in the forward pass, so that sets iterate in the order values are computed.
    fn order_key(&self) -> (usize, usize, usize) {
        match *self {
            HookPoint::Embed => (0, 0, 0),
            HookPoint::PosEmbed => (0, 0, 1),
            HookPoint::ResidPre(i) => (1, i, 0),
            HookPoint::AttnOut(i) => (1, i, 1),
            HookPoint::ResidMid(i) => (1, i, 2),
            HookPoint::MlpPre(i) => (1, i, 3),
            HookPoint::MlpPost(i) => (1, i, 4),
            HookPoint::MlpOut(i) => (1, i, 5),
            HookPoint::ResidPost(i) => (1, i, 6),
            HookPoint::LnFinal => (2, 0, 0),
        }
    }
}

impl Ord for HookPoint {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl PartialOrd for HookPoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("unknown hook `{pattern}` for a {n_layers}-layer model; valid names: {valid} (globs such as `blocks.*.hook_resid_post` select several)")]
    Unknown {
        pattern: String,
        n_layers: usize,
        valid: String,
    },
    #[error("bad hook pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("no hooks requested: pass --hooks with at least one name or glob")]
    Empty,
}

/// The set of hooks a forward pass must record, in forward order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookSet {
    points: BTreeSet<HookPoint>,
}

impl HookSet {
    pub fn new(points: impl IntoIterator<Item = HookPoint>) -> Self {
        HookSet {
            points: points.into_iter().collect(),
        }
    }

    /// Selects hooks from comma-separated names or globs (`*`, `?`, `[0-3]`), e.g.
    /// `blocks.*.hook_resid_post,blocks.3.mlp.hook_post`. Each pattern must match something.
    pub fn select(patterns: &str, n_layers: usize) -> Result<HookSet, HookError> {
        let all = HookPoint::all(n_layers);
        let mut points = BTreeSet::new();
        for pattern in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|e| HookError::BadPattern {
                    pattern: pattern.to_string(),
                    reason: e.kind().to_string(),
                })?
                .compile_matcher();
            let mut matched = false;
            for p in &all {
                if glob.is_match(p.name()) {
                    points.insert(*p);
                    matched = true;
                }
            }
            if !matched {
                return Err(HookError::Unknown {
                    pattern: pattern.to_string(),
                    n_layers,
                    valid: valid_names_summary(n_layers),
                });
            }
        }
        if points.is_empty() {
            return Err(HookError::Empty);
        }
        Ok(HookSet { points })
    }

    pub fn contains(&self, p: HookPoint) -> bool {
        self.points.contains(&p)
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = HookPoint> + '_ {
        self.points.iter().copied()
    }

    /// How many blocks the forward pass must run to produce every hook in the set.
    pub fn blocks_needed(&self, n_layers: usize) -> usize {
        self.points
            .iter()
            .map(|p| match p {
                HookPoint::LnFinal => n_layers,
                p => p.block().map_or(0, |i| i + 1),
            })
            .max()
            .unwrap_or(0)
    }
}

/// A compact list of valid names for error messages.
pub fn valid_names_summary(n_layers: usize) -> String {
    let last = n_layers.saturating_sub(1);
    format!(
        "hook_embed, hook_pos_embed, blocks.{{0..{last}}}.{{hook_resid_pre, hook_attn_out, hook_resid_mid, mlp.hook_pre, mlp.hook_post, hook_mlp_out, hook_resid_post}}, ln_final.hook_normalized"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        let all = HookPoint::all(2);
        assert_eq!(all.len(), 2 + 2 * 7 + 1);
        let set = HookSet::new(all.iter().rev().copied());
        let ordered: Vec<_> = set.iter().collect();
        assert_eq!(ordered, all, "a HookSet iterates in forward order");
        assert_eq!(HookPoint::MlpPost(1).name(), "blocks.1.mlp.hook_post");
    }

    #[test]
    fn globs_select_several_and_unknown_names_fail() {
        let set = HookSet::select("blocks.*.hook_resid_post, hook_embed", 12).unwrap();
        assert_eq!(set.len(), 13);
        assert_eq!(set.blocks_needed(12), 12);
        let set = HookSet::select("blocks.3.mlp.hook_post", 12).unwrap();
        assert_eq!(set.blocks_needed(12), 4);
        let set = HookSet::select("hook_embed", 12).unwrap();
        assert_eq!(set.blocks_needed(12), 0);
        assert_eq!(
            HookSet::select("ln_final.hook_normalized", 12)
                .unwrap()
                .blocks_needed(12),
            12
        );
        let err = HookSet::select("blocks.12.hook_resid_post", 12).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("blocks.12.hook_resid_post"), "{msg}");
        assert!(msg.contains("blocks.{0..11}"), "{msg}");
        assert!(matches!(HookSet::select(" , ", 12), Err(HookError::Empty)));
    }
}
