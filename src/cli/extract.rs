//! `unravel extract`: hidden states of a corpus streamed into parquet shards.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use unravel::extract;
use unravel::folder_lock::{lock_output, lock_output_part};
use unravel::models::hooks::HookSet;
use unravel::store::StorageDtype;

use crate::cli::model_args::ModelArgs;
use crate::cli::progress::progress_bar;

pub const EXTRACT_EXAMPLES: &str = "Examples:\n  \
# GPT-2 residual stream, 10M tokens, f16 shards\n  \
unravel extract --model gpt2 --corpus data/corpus.jsonl --hooks 'blocks.*.hook_resid_post' \\\n      \
--ctx 128 --max-tokens 10000000 --out acts/gpt2-resid\n\n  \
# resume after a crash or Ctrl-C (same flags + --resume)\n  \
unravel extract --model gpt2 --corpus data/corpus.jsonl --hooks 'blocks.*.hook_resid_post' --max-tokens 10000000 --out acts/gpt2-resid --resume\n\n  \
# machine 3 of 8 (a Slurm array or Kubernetes indexed job), then join the parts\n  \
unravel extract ... --part 3/8 --out acts/gpt2-resid\n  \
unravel merge-manifests acts/gpt2-resid\n\n  \
# a Hugging Face hub dataset as the corpus (cached; HF_HUB_OFFLINE=1 reads the cache only)\n  \
unravel extract --model gpt2 --corpus 'hf://datasets/NeelNanda/pile-10k' --hooks blocks.6.hook_resid_post --max-tokens 10000000 --out acts/gpt2-l6\n\n  \
# DistilBERT MLP neurons with a document label carried to every token\n  \
unravel extract --model distilbert-base-uncased --corpus reviews.jsonl --label-field sentiment \\\n      \
--hooks 'blocks.*.mlp.hook_post' --out acts/distil-mlp\n\n\
Corpus: a folder or glob of .txt files (one document each), a .jsonl file (--text-field, default `text`),\n\
parquet files with a text column, or hf://datasets/OWNER/NAME[@REV][/GLOB] (a hub dataset's files). Shards: shard-00000.parquet ... with columns context_id, position,\n\
token_id, token, special, label.*, and one fixed_size_list column per hook; the manifest in __unravel__/ beside them.";

#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Corpus: folder or glob of .txt files, a .jsonl file, .parquet file(s)/folder, or a hub
    /// dataset hf://datasets/OWNER/NAME[@REVISION][/GLOB].
    #[arg(long, value_name = "PATH")]
    corpus: PathBuf,
    /// JSON field / parquet column holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Document-level field to carry to every token as a `label.FIELD` column (repeatable).
    #[arg(long = "label-field", value_name = "FIELD")]
    label_fields: Vec<String>,
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    #[arg(long)]
    lossy: bool,
    /// Hook names or globs, comma separated.
    #[arg(long, value_name = "PATTERNS")]
    hooks: String,
    /// Tokens per context (specials included).
    #[arg(long, default_value_t = 128, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    ctx: usize,
    /// GPT-2: do not start contexts with <|endoftext|> (documents stay separated by it).
    #[arg(long)]
    no_bos: bool,
    /// Stop after this many tokens (whole contexts); default: the whole corpus.
    #[arg(long, value_name = "N", value_parser = crate::cli::values::at_least_1::<u64>, allow_negative_numbers = true)]
    max_tokens: Option<u64>,
    /// Storage dtype of the hook columns: f16, bf16 or f32.
    #[arg(long, default_value = "f16")]
    store_dtype: String,
    /// Contexts per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    batch: usize,
    /// Rows (tokens) per shard.
    #[arg(long, default_value_t = 65536, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    shard_tokens: usize,
    /// zstd level of the shards, 1-22; 0 stores them uncompressed. GPT-2 f16 activations keep
    /// ~91% of their bytes at level 1, and zstd is about a quarter of the writer's CPU time.
    #[arg(long, default_value_t = unravel::store::DEFAULT_ZSTD_LEVEL, value_name = "0-22",
          value_parser = clap::value_parser!(i32).range(0..=22))]
    zstd_level: i32,
    /// Output dataset folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Continue an interrupted run in --out (same settings).
    #[arg(long)]
    resume: bool,
    /// Process only part i of N (1-based), e.g. 3/8: contexts with id % N == i - 1.
    #[arg(long, value_name = "I/N")]
    part: Option<String>,
}

pub fn cmd_extract(a: &ExtractArgs) -> Result<()> {
    let store_dtype: StorageDtype = a
        .store_dtype
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--store-dtype: {e}"))?;
    let part = a
        .part
        .as_deref()
        .map(unravel::corpus::parse_part)
        .transpose()?;
    let _lock = match part {
        Some((i, _)) => lock_output_part("--out", &a.out, &format!("p{i:02}"), "extract")?,
        None => lock_output("--out", &a.out, "extract")?,
    };
    let (model, files) = a.model.load()?;
    let hooks = HookSet::select(&a.hooks, model.n_layers()).context("--hooks")?;
    // A shard's rows of every hook, buffered and encoded (3 × f32), and a forward batch's hook
    // outputs (2 × f32), refused before the output folder exists.
    let width: u64 = hooks.iter().map(|h| model.hook_dim(h) as u64).sum();
    let rows = (a.shard_tokens as u64)
        .saturating_add(unravel::memory::product(&[a.batch as u64, a.ctx as u64]));
    unravel::memory::check_fits(
        &format!(
            "--shard-tokens {} and --batch {} × --ctx {} over {} hook values per token",
            a.shard_tokens, a.batch, a.ctx, width
        ),
        unravel::memory::product(&[12, rows, width]),
        "lower --shard-tokens or --batch",
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let tokenizer = a.model.tokenizer_path(&files)?;
    let bos = match (a.no_bos, model.arch().is_causal()) {
        (true, true) => Some(unravel::corpus::BosPolicy::None),
        (true, false) => bail!(
            "--no-bos: {} contexts are always [CLS] ... [SEP]",
            model.arch().name()
        ),
        (false, _) => None,
    };
    let plan = extract::ExtractPlan {
        corpus: a.corpus.clone(),
        corpus_options: unravel::corpus::CorpusOptions {
            text_field: a.text_field.clone(),
            label_fields: a.label_fields.clone(),
            lossy: a.lossy,
        },
        hooks,
        ctx: a.ctx,
        bos,
        max_tokens: a.max_tokens,
        store_dtype,
        batch: a.batch,
        shard_tokens: a.shard_tokens,
        zstd_level: a.zstd_level,
        out: a.out.clone(),
        resume: a.resume,
        part,
    };
    // Without --max-tokens the corpus's length in tokens is unknown until it is read: a spinner
    // with the rate, no bar and no ETA.
    let bar = if a.max_tokens.is_some() {
        progress_bar(
            "{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
        )
    } else {
        let bar = progress_bar("{spinner} [{elapsed_precise}] {human_pos} rows  {per_sec}");
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    };
    let seed = a.model.random_weights.then_some(a.model.seed);
    let report = extract::run(&model, &files, &tokenizer, seed, &plan, |p| {
        if let Some(t) = p.total_rows {
            bar.set_length(t);
        }
        bar.set_position(p.rows);
    })?;
    bar.finish_and_clear();
    print_report(a, &report);
    Ok(())
}

/// Tokens and rows written, and where the time went.
fn print_report(a: &ExtractArgs, report: &extract::ExtractReport) {
    let m = &report.manifest;
    let t = &report.timings;
    let wall = report.seconds.max(1e-9);
    // Text tokens first: the number `unravel run`'s summary and `inspect` show (totals.tokens);
    // rows add the BOS / separator tokens the packer placed. The rate counts rows.
    println!(
        "extracted {} text tokens this run ({} rows with {} BOS/separator tokens; dataset: {} text tokens, {} rows, {} contexts, {} shards) in {:.1}s ({:.0} tokens/s) -> {}",
        report.tokens_this_run,
        report.rows_this_run,
        report.rows_this_run - report.tokens_this_run,
        m.totals.tokens,
        m.totals.rows,
        m.totals.contexts,
        m.shards.len(),
        report.seconds,
        report.rows_this_run as f64 / wall,
        a.out.display()
    );
    println!(
        "busy time: forward {:.1}s ({:.0}% of wall), tokenize+pack {:.1}s ({:.0}%), write {:.1}s ({:.0}%), overlapped on separate threads; write CPU {:.1}s ({:.0}% of wall)",
        t.forward,
        100.0 * t.forward / wall,
        t.pack,
        100.0 * t.pack / wall,
        t.write,
        100.0 * t.write / wall,
        t.write_cpu,
        100.0 * t.write_cpu / wall
    );
}
