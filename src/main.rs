//! The `unravel` command line: parse flags, call the library, map errors to exit codes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use unravel::device::{parse_device, parse_dtype};
use unravel::models::hooks::HookSet;
use unravel::models::load::{self, HubOptions};
use unravel::models::tokenizer::TextTokenizer;
use unravel::models::{Model, ModelOptions};
use unravel::trace;

#[derive(Parser)]
#[command(
    name = "unravel",
    version,
    about = "Take features out of superposition: hooked GPT-2 / DistilBERT on candle, activation shards, sparse autoencoders, polysemanticity audits.",
    after_help = "Examples:\n  \
unravel trace --model gpt2 --text \"The cat sat on the mat\" --hooks 'blocks.*.hook_resid_post' --out acts.safetensors\n  \
unravel trace --model tests/fixtures/tiny-distilbert --file texts.txt --hooks 'blocks.1.mlp.hook_post' --out acts.safetensors\n\n\
Run `unravel <command> --help` for each command's flags."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on a few texts and write every requested hook to one safetensors file.
    #[command(after_help = TRACE_EXAMPLES)]
    Trace(TraceArgs),
}

const TRACE_EXAMPLES: &str = "Examples:\n  \
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
struct ModelArgs {
    /// Local model folder (config.json, model.safetensors or sharded, tokenizer.json), a config
    /// .json file (with --random-weights), or a Hugging Face hub repo id such as `gpt2`.
    #[arg(long, value_name = "DIR_OR_REPO")]
    model: String,
    /// Hub branch, tag or commit.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Hub cache folder (default: $HF_HOME/hub or ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Use the hub cache only, no network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Build the model from config.json alone with random weights (benchmarks, no weights at hand).
    #[arg(long)]
    random_weights: bool,
    /// Seed for --random-weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Compute dtype: f32, f16 or bf16 (outputs are always written as f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
}

impl ModelArgs {
    fn load(&self) -> Result<(Model, load::ModelFiles)> {
        let device = parse_device(&self.device)?;
        let dtype = parse_dtype(&self.dtype)?;
        let mut hub = HubOptions {
            revision: self.revision.clone(),
            cache_dir: self.cache_dir.clone(),
            ..HubOptions::default()
        };
        hub.offline |= self.offline;
        let files = load::resolve(&self.model, &hub, !self.random_weights)?;
        let opts = ModelOptions {
            device,
            dtype,
            random_seed: self.random_weights.then_some(self.seed),
        };
        let model = Model::load(&files, &opts)?;
        Ok((model, files))
    }

    fn tokenizer(&self, files: &load::ModelFiles) -> Result<TextTokenizer> {
        let path = match (&self.tokenizer, &files.tokenizer) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => bail!(
                "model `{}` has no tokenizer.json; pass --tokenizer FILE",
                self.model
            ),
        };
        if !path.is_file() {
            bail!("--tokenizer {}: file does not exist", path.display());
        }
        Ok(TextTokenizer::from_file(&path)?)
    }
}

#[derive(Args)]
struct TraceArgs {
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
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Output safetensors file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn cmd_trace(a: &TraceArgs) -> Result<()> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Trace(a) => cmd_trace(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
