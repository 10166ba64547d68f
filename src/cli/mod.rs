//! The `unravel` command line: one file per command (flags → library options → the stage → what
//! it prints), the shared pieces beside them. Only `main` maps errors to exit codes.
//!
//! mod.rs        — the command enum, its help text, dispatch and `check_args` (for `run`)
//! progress.rs   — the progress bar every command shows on a terminal
//! output.rs     — writing a result file, naming the flag it came from
//! values.rs     — value parsers of numeric flags (the library's `flag_values`, beside the config
//!                 types whose fields are flags)
//! read_args.rs  — --allow-incomplete / --skip-nonfinite, shared by reading commands
//! model_args.rs — --model and its loading flags, shared by trace and extract
//! run.rs, trace.rs, extract.rs, import.rs, inspect.rs (inspect, merge-manifests), train.rs, eval.rs,
//! synth.rs (synth_bench.rs: its SynthSAEBench generator flags), verify.rs, plant.rs, audit.rs,
//! analyze.rs, toy.rs — one command each

use anyhow::Result;
use clap::{Parser, Subcommand};

mod analyze;
mod audit;
mod eval;
mod extract;
mod import;
mod inspect;
mod model_args;
mod output;
mod plant;
mod progress;
mod read_args;
mod run;
mod synth;
mod synth_bench;
mod toy;
mod trace;
mod train;
mod values;
mod verify;

#[derive(Parser)]
// term_width = 0: help is printed as written, never re-wrapped to the terminal (propagates to every
// subcommand), so each example stays one copy-pasteable line (`\` continuations where split).
#[command(
    name = "unravel",
    version,
    term_width = 0,
    about = "Take features out of superposition: hooked GPT-2 / DistilBERT / BERT on candle, activation shards, sparse autoencoders, polysemanticity audits, superposition metrics, toy models.",
    after_help = "Examples:\n  \
unravel run configs/demo.toml     # the whole pipeline on the embedded demo (no download)\n  \
unravel trace --model gpt2 --text \"The cat sat on the mat\" --hooks 'blocks.*.hook_resid_post' --out acts.safetensors\n  \
unravel trace --model tests/fixtures/tiny-distilbert --file texts.txt --hooks 'blocks.1.mlp.hook_post' --out acts.safetensors\n  \
unravel extract --model gpt2 --corpus data/corpus.jsonl --hooks 'blocks.6.hook_resid_post' --out acts/gpt2-resid\n  \
unravel train --acts acts/gpt2-resid --expansion 8 --tokens 50000000 --out runs/l6\n  \
unravel eval --sae runs/l6 --acts acts/gpt2-resid --model gpt2\n  \
unravel synth --features 512 --dims 256 --density 0.1 --out synth/seed000 && unravel train --acts synth/seed000 --d-sae 1024 --tokens 1000000 --out runs/seed000\n  \
unravel verify --truth synth/seed000 --sae runs/seed000 --min-mmcs 0.98\n  \
unravel audit --acts acts/gpt2-mlp3 --sae runs/mlp3 --concepts configs/concepts.toml --out audits/mlp3\n  \
unravel analyze --acts acts/gpt2-resid --out analysis/gpt2-resid\n  \
unravel toy --experiment pentagon\n\n\
Run `unravel <command> --help` for each command's flags."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: boxing the larger variants would buy nothing.
#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a whole pipeline from one config: extract / synth → train → eval → audit → verify →
    /// analyze, into one run folder with an index page; re-running resumes.
    #[command(after_help = run::RUN_EXAMPLES)]
    Run(run::RunArgs),
    /// Run a model on a few texts and write every requested hook to one safetensors file.
    #[command(after_help = trace::TRACE_EXAMPLES)]
    Trace(trace::TraceArgs),
    /// Stream hidden states of a corpus into parquet shards (resumable, shardable across machines).
    #[command(after_help = extract::EXTRACT_EXAMPLES)]
    Extract(extract::ExtractArgs),
    /// Turn activations from numpy, safetensors, parquet / Arrow or a SAELens cache into a dataset.
    #[command(after_help = import::IMPORT_EXAMPLES)]
    Import(import::ImportArgs),
    /// Summarise an activation dataset: model, hooks, tokens, shards, size; optionally verify it.
    #[command(
        after_help = "Examples:\n  unravel inspect acts/gpt2-resid\n  unravel inspect acts/gpt2-resid --verify --rows 5"
    )]
    Inspect(inspect::InspectArgs),
    /// Join the manifests of a run split with --part i/N into one dataset.
    #[command(
        name = "merge-manifests",
        after_help = "Examples:\n  # 8 machines wrote parts into one shared folder\n  unravel merge-manifests acts/gpt2-resid\n  # parts in separate sub-folders of the dataset folder\n  unravel merge-manifests acts/gpt2-resid --parts acts/gpt2-resid/p1 acts/gpt2-resid/p2"
    )]
    MergeManifests(inspect::MergeArgs),
    /// Train an L1 sparse autoencoder on one hook of an activation dataset (three recipes, exact resume).
    #[command(after_help = train::TRAIN_EXAMPLES)]
    // Boxed: the train flags are the largest variant by far (clippy::large_enum_variant).
    Train(Box<train::TrainArgs>),
    /// Evaluate an SAE (ours or any SAELens-layout folder) on activation shards.
    #[command(after_help = eval::EVAL_EXAMPLES)]
    Eval(eval::EvalArgs),
    /// Write a dataset of planted superposed features (same shard format) plus its ground truth.
    #[command(after_help = synth::SYNTH_EXAMPLES)]
    Synth(synth::SynthArgs),
    /// Check an SAE (planted features: MMCS, MCC, recovered fraction) or an audit (planted neurons: precision, recall) against ground truth.
    #[command(after_help = verify::VERIFY_EXAMPLES)]
    Verify(verify::VerifyArgs),
    /// Which neurons / SAE features are polysemantic: score every unit x concept, write audit.json,
    /// scores.csv and an HTML report.
    #[command(after_help = audit::AUDIT_EXAMPLES)]
    Audit(audit::AuditArgs),
    /// Superposition metrics of each hook: effective dimensionality, effective rank, sparsity,
    /// interference, PCA; a per-layer table and plots.
    #[command(after_help = analyze::ANALYZE_EXAMPLES)]
    Analyze(analyze::AnalyzeArgs),
    /// Anthropic's toy models of superposition: pentagon, sparse vs dense, importance, hidden sizes, WᵀW, phase diagram.
    #[command(after_help = toy::TOY_EXAMPLES)]
    Toy(toy::ToyArgs),
    /// Copy an activation dataset with planted features added to one hook (ground truth beside it).
    #[command(after_help = plant::PLANT_EXAMPLES)]
    Plant(plant::PlantArgs),
}

/// An error that ends the process with its own exit code and message, printed as is (no
/// `error:` prefix): `train` interrupted by Ctrl-C exits 130.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Runs the parsed command.
pub fn dispatch(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Run(a) => run::cmd_run(a, check_args),
        Command::Trace(a) => trace::cmd_trace(a),
        Command::Extract(a) => extract::cmd_extract(a),
        Command::Import(a) => import::cmd_import(a),
        Command::Inspect(a) => inspect::cmd_inspect(a),
        Command::MergeManifests(a) => inspect::cmd_merge(a),
        Command::Train(a) => train::cmd_train(a),
        Command::Eval(a) => eval::cmd_eval(a),
        Command::Synth(a) => synth::cmd_synth(a),
        Command::Verify(a) => verify::cmd_verify(a),
        Command::Plant(a) => plant::cmd_plant(a),
        Command::Audit(a) => audit::cmd_audit(a),
        Command::Analyze(a) => analyze::cmd_analyze(a),
        Command::Toy(a) => toy::cmd_toy(a),
    }
}

/// Parses `unravel ARGS` without running it: `unravel run` checks every stage's flags before
/// starting any (a typo in a config fails at once, not after hours of extraction).
fn check_args(args: &[String]) -> std::result::Result<(), String> {
    match Cli::try_parse_from(std::iter::once("unravel").chain(args.iter().map(String::as_str))) {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_string()),
    }
}
