//! `unravel trace`: every requested hook of a few texts into one safetensors file.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use unravel::models::hooks::HookSet;
use unravel::trace;

use crate::cli::model_args::ModelArgs;

pub const TRACE_EXAMPLES: &str = "Examples:\n  \
# every residual-stream hook of GPT-2 (hub, or the hub cache when offline)\n  \
unravel trace --model gpt2 --text \"The cat sat on the mat\" --hooks 'blocks.*.hook_resid_post' --out acts.safetensors\n\n  \
# MLP neurons of a local DistilBERT folder, texts from a file (one per line)\n  \
unravel trace --model ./distilbert-base-uncased --file texts.txt --hooks 'blocks.*.mlp.hook_post' --out acts.safetensors\n\n  \
# logits and per-token loss with a BOS token first\n  \
unravel trace --model gpt2 --text \"Hello world\" --hooks hook_embed --prepend-bos --logits --out acts.safetensors\n\n  \
# a GPT-2-small-shaped model with random weights, from a config file alone\n  \
unravel trace --model configs/models/gpt2.json --random-weights --tokenizer tokenizer.json --text \"hi\" --hooks 'blocks.0.*' --out acts.safetensors\n\n\
The output holds `tokens` i64 [N], `doc` i64 [N], one f32 [N, d] tensor per hook (named by its hook name),\n\
and with --logits `logits` f32 [N, vocab] and `token_ce` f32 [N] (next-token cross-entropy, 0 on each text's last token).";

/// Which model to load and how.
#[derive(Args)]
pub struct TraceArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A text to run (repeatable).
    #[arg(long, value_name = "TEXT")]
    text: Vec<String>,
    /// A UTF-8 file with one text per line (blank lines are skipped).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Hook names or globs, comma separated, e.g. 'blocks.*.hook_resid_post,blocks.3.mlp.hook_post'.
    #[arg(long, value_name = "PATTERNS")]
    hooks: String,
    /// Put `<|endoftext|>` before each text (GPT-2; Hugging Face adds none by default).
    #[arg(long)]
    prepend_bos: bool,
    /// Also write `logits` [N, vocab] and `token_ce` [N] (GPT-2).
    #[arg(long)]
    logits: bool,
    /// Cut texts longer than the model's context instead of failing.
    #[arg(long)]
    truncate: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    batch: usize,
    /// Output safetensors file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn cmd_trace(a: &TraceArgs) -> Result<()> {
    let mut texts: Vec<trace::TextInput> = a
        .text
        .iter()
        .enumerate()
        .map(|(i, t)| trace::TextInput {
            text: t.clone(),
            origin: format!("--text #{}", i + 1),
        })
        .collect();
    if let Some(f) = &a.file {
        texts.extend(trace::read_text_file(f)?);
    }
    let (model, files) = a.model.load()?;
    let hooks = HookSet::select(&a.hooks, model.n_layers()).context("--hooks")?;
    let tok = a.model.tokenizer(&files)?;
    let ids = trace::tokenize(&tok, &model, &texts, a.prepend_bos, a.truncate)?;
    let t0 = std::time::Instant::now();
    let result = trace::run(&model, &ids, &hooks, a.logits, a.batch)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut meta = HashMap::new();
    meta.insert("model".into(), files.id.clone());
    if let Some(r) = &files.revision {
        meta.insert("revision".into(), r.clone());
    }
    meta.insert("arch".into(), model.arch().name().into());
    meta.insert("dtype".into(), a.model.dtype.clone());
    meta.insert("random_weights".into(), a.model.random_weights.to_string());
    meta.insert("prepend_bos".into(), a.prepend_bos.to_string());
    meta.insert(
        "hooks".into(),
        hooks.iter().map(|h| h.name()).collect::<Vec<_>>().join(","),
    );
    meta.insert("unravel_version".into(), env!("CARGO_PKG_VERSION").into());
    trace::write(&result, &a.out, meta)?;
    let n = result.tokens.len();
    println!(
        "traced {} texts, {} tokens, {} hooks{} in {:.2}s ({:.0} tokens/s) -> {}",
        ids.len(),
        n,
        hooks.len(),
        if a.logits { " + logits" } else { "" },
        secs,
        n as f64 / secs.max(1e-9),
        a.out.display()
    );
    Ok(())
}
