//! What the packer is told: where special tokens go ([`BosPolicy`]), the context length and
//! limits ([`PackOptions`]), and which contexts a `--part i/n` owns.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{CorpusError, Result};

/// Where the packer puts special tokens (see the module docs for the exact rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BosPolicy {
    /// GPT-2 default: each context starts with `<|endoftext|>`; documents are separated by
    /// `<|endoftext|>`.
    #[serde(rename = "endoftext")]
    EndOfText,
    /// GPT-2 `--no-bos`: contexts are plain slices of the stream; documents are still separated
    /// by `<|endoftext|>`.
    #[serde(rename = "none")]
    None,
    /// BERT / DistilBERT: each context is `[CLS]` + stream + `[SEP]`; documents are separated by
    /// `[SEP]`.
    #[serde(rename = "cls-sep")]
    ClsSep,
}

impl BosPolicy {
    /// The policy's name for flags and the manifest: `endoftext`, `none` or `cls-sep`.
    pub fn name(self) -> &'static str {
        match self {
            BosPolicy::EndOfText => "endoftext",
            BosPolicy::None => "none",
            BosPolicy::ClsSep => "cls-sep",
        }
    }

    /// Stream tokens per context of `ctx` tokens (`ctx` minus the placed specials).
    pub fn stream_len(self, ctx: usize) -> usize {
        match self {
            BosPolicy::EndOfText => ctx.saturating_sub(1),
            BosPolicy::None => ctx,
            BosPolicy::ClsSep => ctx.saturating_sub(2),
        }
    }

    /// The (first token, separator, last token) strings this policy places.
    pub(super) fn token_strings(
        self,
    ) -> (Option<&'static str>, &'static str, Option<&'static str>) {
        match self {
            BosPolicy::EndOfText => (Some("<|endoftext|>"), "<|endoftext|>", None),
            BosPolicy::None => (None, "<|endoftext|>", None),
            BosPolicy::ClsSep => (Some("[CLS]"), "[SEP]", Some("[SEP]")),
        }
    }
}

impl FromStr for BosPolicy {
    type Err = CorpusError;

    /// Parses `endoftext`, `none` or `cls-sep`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "endoftext" => Ok(BosPolicy::EndOfText),
            "none" => Ok(BosPolicy::None),
            "cls-sep" => Ok(BosPolicy::ClsSep),
            _ => Err(CorpusError::BadOption {
                flag: "--bos",
                reason: format!("unknown policy `{s}`; use endoftext, none or cls-sep"),
            }),
        }
    }
}

/// How to pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackOptions {
    /// Tokens per context, specials included (default 128).
    pub ctx: usize,
    /// Where special tokens go (default `EndOfText`).
    pub bos: BosPolicy,
    /// Stop after the context that reaches this many tokens: ceil(max_tokens / ctx) contexts,
    /// counted from context 0 (default: the whole corpus).
    pub max_tokens: Option<u64>,
    /// Emit nothing before this context id (resume); default 0.
    pub start_context_id: u64,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            ctx: 128,
            bos: BosPolicy::EndOfText,
            max_tokens: None,
            start_context_id: 0,
        }
    }
}

impl PackOptions {
    /// The number of contexts `max_tokens` allows, if set.
    pub fn max_contexts(&self) -> Option<u64> {
        self.max_tokens.map(|t| t.div_ceil(self.ctx.max(1) as u64))
    }

    /// Checks the ranges: the context must hold at least one stream token, `max_tokens` > 0.
    pub fn validate(&self) -> Result<()> {
        if self.bos.stream_len(self.ctx) == 0 {
            return Err(CorpusError::BadOption {
                flag: "--ctx",
                reason: format!(
                    "{} is too short for --bos {}; a context needs at least one text token besides the specials",
                    self.ctx,
                    self.bos.name()
                ),
            });
        }
        if self.max_tokens == Some(0) {
            return Err(CorpusError::BadOption {
                flag: "--max-tokens",
                reason:
                    "is 0; give a positive number of tokens, or leave it out for the whole corpus"
                        .into(),
            });
        }
        Ok(())
    }
}

/// True when part `(i, n)` (1-based `i` of `n`, as in `--part i/n`) owns `context_id`:
/// `context_id % n == i - 1`. The parts 1..=n partition the ids exactly; an invalid part
/// (`i` = 0 or `i` > `n`) owns nothing (check it with [`parse_part`]).
pub fn part_owns(context_id: u64, part: (usize, usize)) -> bool {
    let (i, n) = part;
    i >= 1 && i <= n && context_id % n as u64 == (i - 1) as u64
}

/// Parses a `--part i/n` value (1 ≤ i ≤ n).
pub fn parse_part(text: &str) -> Result<(usize, usize)> {
    let bad = || CorpusError::BadOption {
        flag: "--part",
        reason: format!("`{text}` is not i/n with 1 <= i <= n (e.g. 2/4)"),
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let i: usize = i.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}
