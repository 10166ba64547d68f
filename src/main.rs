//! The `unravel` command line: parse flags, call the library, map errors to exit codes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use unravel::device::{parse_device, parse_dtype};
use unravel::folder_lock::{lock_output, lock_output_part};
use unravel::hub::HubOptions;
use unravel::models::hooks::HookSet;
use unravel::models::load;
use unravel::models::tokenizer::TextTokenizer;
use unravel::models::{Model, ModelOptions};
use unravel::store::StorageDtype;
use unravel::{extract, trace};

mod cmd_analyze;
mod cmd_audit;
mod cmd_run;
mod cmd_toy;
mod cmd_train;
mod cmd_values;
mod read_args;

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole pipeline from one config: extract / synth → train → eval → audit → verify →
    /// analyze, into one run folder with an index page; re-running resumes.
    #[command(after_help = cmd_run::RUN_EXAMPLES)]
    Run(cmd_run::RunArgs),
    /// Run a model on a few texts and write every requested hook to one safetensors file.
    #[command(after_help = TRACE_EXAMPLES)]
    Trace(TraceArgs),
    /// Stream hidden states of a corpus into parquet shards (resumable, shardable across machines).
    #[command(after_help = EXTRACT_EXAMPLES)]
    Extract(ExtractArgs),
    /// Summarise an activation dataset: model, hooks, tokens, shards, size; optionally verify it.
    #[command(
        after_help = "Examples:\n  unravel inspect acts/gpt2-resid\n  unravel inspect acts/gpt2-resid --verify --rows 5"
    )]
    Inspect(InspectArgs),
    /// Join the manifests of a run split with --part i/N into one dataset.
    #[command(
        name = "merge-manifests",
        after_help = "Examples:\n  # 8 machines wrote parts into one shared folder\n  unravel merge-manifests acts/gpt2-resid\n  # parts in separate sub-folders of the dataset folder\n  unravel merge-manifests acts/gpt2-resid --parts acts/gpt2-resid/p1 acts/gpt2-resid/p2"
    )]
    MergeManifests(MergeArgs),
    /// Train an L1 sparse autoencoder on one hook of an activation dataset (two recipes, exact resume).
    #[command(after_help = cmd_train::TRAIN_EXAMPLES)]
    Train(cmd_train::TrainArgs),
    /// Evaluate an SAE (ours or any SAELens-layout folder) on activation shards.
    #[command(after_help = cmd_train::EVAL_EXAMPLES)]
    Eval(cmd_train::EvalArgs),
    /// Write a dataset of planted superposed features (same shard format) plus its ground truth.
    #[command(after_help = SYNTH_EXAMPLES)]
    Synth(SynthArgs),
    /// Check an SAE (planted features: MMCS, MCC, recovered fraction) or an audit (planted neurons: precision, recall) against ground truth.
    #[command(after_help = cmd_train::VERIFY_EXAMPLES)]
    Verify(cmd_train::VerifyArgs),
    /// Which neurons / SAE features are polysemantic: score every unit x concept, write audit.json,
    /// scores.csv and an HTML report.
    #[command(after_help = cmd_audit::AUDIT_EXAMPLES)]
    Audit(cmd_audit::AuditArgs),
    /// Superposition metrics of each hook: effective dimensionality, effective rank, sparsity,
    /// interference, PCA; a per-layer table and plots.
    #[command(after_help = cmd_analyze::ANALYZE_EXAMPLES)]
    Analyze(cmd_analyze::AnalyzeArgs),
    /// Anthropic's toy models of superposition: pentagon, sparse vs dense, importance, hidden sizes, WᵀW, phase diagram.
    #[command(after_help = cmd_toy::TOY_EXAMPLES)]
    Toy(cmd_toy::ToyArgs),
    /// Copy an activation dataset with planted features added to one hook (ground truth beside it).
    #[command(after_help = PLANT_EXAMPLES)]
    Plant(PlantArgs),
}

const PLANT_EXAMPLES: &str = "Examples:\n  \
# 64 directions in GPT-2's layer-6 residual stream, each on 1% of tokens, at 0.5x the mean norm\n  \
unravel plant --acts acts/gpt2-resid --hook blocks.6.hook_resid_post --features 64 --density 0.01 \\\n      \
--magnitude 0.5 --out acts/gpt2-resid-planted\n  \
unravel train --acts acts/gpt2-resid-planted --hook blocks.6.hook_resid_post --out runs/planted\n  \
unravel verify --truth acts/gpt2-resid-planted --sae runs/planted --min-recovered 0.9\n\n\
Special-token rows are left alone; every other column and hook is copied unchanged.";

#[derive(Args)]
struct PlantArgs {
    /// Source activation dataset.
    #[arg(long, value_name = "DIR")]
    acts: PathBuf,
    /// Hook to plant into (default: the dataset's only hook).
    #[arg(long)]
    hook: Option<String>,
    /// Planted directions.
    #[arg(long, default_value_t = 64, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    features: usize,
    /// Probability that a planted feature is active on a token.
    #[arg(long, default_value_t = 0.01, value_parser = crate::cmd_values::probability, allow_negative_numbers = true)]
    density: f64,
    /// Mean magnitude as a multiple of the hook's mean row norm (magnitudes are Exponential).
    #[arg(long, default_value_t = 0.5, value_parser = crate::cmd_values::positive_f32, allow_negative_numbers = true)]
    magnitude: f32,
    #[arg(long, default_value_t = 0, value_parser = crate::cmd_values::whole::<u64>, allow_negative_numbers = true)]
    seed: u64,
    /// Output dataset folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    read: read_args::ReadArgs,
}

fn cmd_plant(a: &PlantArgs) -> Result<()> {
    let ds = unravel::store::Dataset::open_with(&a.acts, a.read.options())?;
    let hooks = &ds.manifest().hooks;
    let hook = match (&a.hook, hooks.as_slice()) {
        (Some(h), _) => h.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => bail!(
            "--hook: {} holds {} hooks ({}); choose one",
            a.acts.display(),
            hooks.len(),
            hooks
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if !(a.density > 0.0 && a.density <= 1.0)
        || a.features == 0
        || a.magnitude.is_nan()
        || a.magnitude <= 0.0
    {
        bail!("--features must be >= 1, --density in (0, 1], --magnitude > 0");
    }
    let created = !a.out.exists();
    let _lock = lock_output("--out", &a.out, "plant")?;
    if a.out.join(unravel::store::MANIFEST_FILE).exists() {
        bail!(
            "--out {}: already holds a dataset; choose another folder",
            a.out.display()
        );
    }
    let spec = unravel::synth::plant::PlantSpec {
        hook: hook.clone(),
        n_features: a.features,
        density: a.density,
        relative_magnitude: a.magnitude,
        seed: a.seed,
    };
    // Damaged source shards fail here, before anything is written.
    ds.check_shards(&(0..ds.shard_count()).collect::<Vec<_>>())?;
    let t0 = std::time::Instant::now();
    let truth = unravel::synth::plant::plant(&ds, &spec, &a.out).inspect_err(|_| {
        // A failed plant cannot be resumed: leave no partial dataset behind in a folder it made.
        if created {
            let _ = std::fs::remove_dir_all(&a.out);
        }
    })?;
    println!(
        "planted {} features into {hook} ({:.2} active per token) in {:.1}s -> {}",
        truth.n_features,
        truth.frequencies.iter().sum::<f32>(),
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

const SYNTH_EXAMPLES: &str = "Examples:\n  \
# 512 features in 256 dims, each active with probability 0.1, Exponential(1) magnitudes\n  \
unravel synth --features 512 --dims 256 --density 0.1 --tokens 1000000 --seed 7 --out synth/seed000\n  \
unravel train --acts synth/seed000 --d-sae 1024 --tokens 1000000 --out runs/seed000\n\n  \
# planted polysemantic neurons: the audit's ground truth\n  \
unravel synth --neurons 256 --concepts 16 --tokens 200000 --out synth/neurons\n  \
unravel audit --acts synth/neurons --out audits/planted\n  \
unravel verify --truth synth/neurons --audit audits/planted --min-precision 0.95 --min-recall 0.95\n\n\
The dataset has one hook column, `synthetic`; the ground truth (directions [features, dims],\n\
frequencies [features]) is in OUT/truth/ground_truth.safetensors. With --neurons: hook `neurons`,\n\
label columns label.c00 ..., truth in OUT/truth/neurons.json.";

#[derive(Args)]
struct SynthArgs {
    /// Planted features (directions).
    #[arg(long, default_value_t = 512, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    features: usize,
    /// Dimensions of the activation space.
    #[arg(long, default_value_t = 256, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    dims: usize,
    /// Probability that a feature is active on a token.
    #[arg(long, default_value_t = 0.1, value_parser = crate::cmd_values::probability, allow_negative_numbers = true)]
    density: f64,
    /// Rows (tokens) to write.
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    tokens: u64,
    #[arg(long, default_value_t = 0, value_parser = crate::cmd_values::whole::<u64>, allow_negative_numbers = true)]
    seed: u64,
    /// Standard deviation of additive Gaussian noise per dimension.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cmd_values::non_negative_f32, allow_negative_numbers = true)]
    noise: f32,
    /// Rows per shard.
    #[arg(long, default_value_t = 65536, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    shard_tokens: usize,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    store_dtype: String,
    /// Magnitude distribution when active: exponential, uniform or half-normal (all mean 1).
    #[arg(long, default_value = "exponential")]
    magnitude: String,
    /// Power-law frequencies: feature i is active with probability density · decay^i.
    #[arg(long, value_name = "DECAY", value_parser = crate::cmd_values::probability, allow_negative_numbers = true)]
    power_law: Option<f64>,
    /// Importance of feature i = decay^i, scaling its magnitude (1 = all equal).
    #[arg(long, default_value_t = 1.0, value_name = "DECAY", value_parser = crate::cmd_values::positive_f32, allow_negative_numbers = true)]
    importance_decay: f32,
    /// Directions with no pair closer than this |cosine| (pushed apart), instead of random.
    #[arg(long, value_name = "COS", value_parser = crate::cmd_values::probability_f32, allow_negative_numbers = true)]
    max_cosine: Option<f32>,
    /// Directions in this many near-parallel clusters (see --cluster-spread).
    #[arg(long, value_name = "K", value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    clusters: Option<usize>,
    /// Spread of a cluster: member = centre + spread × random unit vector.
    #[arg(long, default_value_t = 0.2, value_parser = crate::cmd_values::non_negative_f32, allow_negative_numbers = true)]
    cluster_spread: f32,
    /// Co-firing groups of this many consecutive features.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    group_size: usize,
    /// Mutually exclusive sets of this many consecutive features (one member at a time).
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    exclusive_size: usize,
    /// Also store every token's feature activations in the truth file (sparse).
    #[arg(long)]
    save_activations: bool,
    /// Planted polysemantic neurons instead of features: this many neurons (hook `neurons`,
    /// one label column per concept, truth in OUT/truth/neurons.json).
    #[arg(long, value_name = "N", help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    neurons: Option<usize>,
    /// Concepts (label columns c00, c01, ...).
    #[arg(
        long,
        default_value_t = 16,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    concepts: usize,
    /// Probability that a token carries a concept.
    #[arg(
        long,
        default_value_t = 0.05,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::probability, allow_negative_numbers = true)]
    concept_density: f64,
    /// Fraction of neurons responding to 2..=K-MAX unrelated concepts.
    #[arg(
        long,
        default_value_t = 0.3,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    polysemantic: f64,
    /// Fraction responding to one concept.
    #[arg(
        long,
        default_value_t = 0.3,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    monosemantic: f64,
    /// Fraction that never fire (the rest fire at random: unexplained).
    #[arg(
        long,
        default_value_t = 0.05,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    dead: f64,
    /// Fraction of distractors: neurons whose mean on 2..=K-MAX concepts is lifted by rare huge
    /// firings while their ranks are not (AUROC < 0.5); not polysemantic.
    #[arg(
        long,
        value_name = "FRAC",
        default_value_t = unravel::synth::neurons::DEFAULT_DISTRACTOR,
        help_heading = "Planted neurons (--neurons)"
    )]
    distractor: f64,
    /// Most concepts of one polysemantic neuron.
    #[arg(
        long,
        default_value_t = 3,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    k_max: usize,
    /// Probability that a neuron misses a token of its concept.
    #[arg(
        long,
        default_value_t = 0.1,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    miss: f64,
    /// Probability of a spurious Exp(1) firing on any token.
    #[arg(
        long,
        default_value_t = 0.01,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    spurious: f64,
    /// Concept 2i+1 also joins concept 2i's tokens with this probability (co-occurrence).
    #[arg(
        long,
        default_value_t = 0.0,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    overlap: f64,
    /// Output dataset folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn cmd_synth(a: &SynthArgs) -> Result<()> {
    let _lock = lock_output("--out", &a.out, "synth")?;
    if a.out.join(unravel::store::MANIFEST_FILE).exists() {
        bail!(
            "--out {}: already holds a dataset; choose another folder",
            a.out.display()
        );
    }
    if let Some(n) = a.neurons {
        return synth_neurons(a, n);
    }
    let mut spec =
        unravel::synth::PlantedSpec::new(a.features, a.dims, a.density, a.tokens, a.seed);
    spec.noise = a.noise;
    spec.magnitude = a
        .magnitude
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--magnitude {e}"))?;
    spec.frequency_decay = a.power_law;
    spec.importance_decay = a.importance_decay;
    spec.group_size = a.group_size;
    spec.exclusive_size = a.exclusive_size;
    spec.save_activations = a.save_activations;
    spec.directions = match (a.max_cosine, a.clusters) {
        (Some(_), Some(_)) => bail!("--max-cosine and --clusters exclude each other"),
        (Some(c), None) => unravel::synth::planted::Directions::MaxCosine(c),
        (None, Some(k)) => unravel::synth::planted::Directions::Clusters {
            clusters: k,
            spread: a.cluster_spread,
        },
        (None, None) => unravel::synth::planted::Directions::Random,
    };
    spec.shard_tokens = a.shard_tokens;
    spec.dtype = a
        .store_dtype
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--store-dtype: {e}"))?;
    spec.check().map_err(|e| anyhow::anyhow!(e))?;
    unravel::memory::check_fits(
        &format!(
            "--features {} × --dims {} (--shard-tokens {}{})",
            a.features,
            a.dims,
            a.shard_tokens,
            if a.save_activations {
                ", --save-activations"
            } else {
                ""
            }
        ),
        synth_memory_bytes(a),
        "lower --features, --dims or --shard-tokens",
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let t0 = std::time::Instant::now();
    let bar = synth_bar(spec.tokens.div_ceil(spec.ctx as u64) * spec.ctx as u64);
    let truth = unravel::synth::planted::write_planted_with_progress(&spec, &a.out, &mut |rows| {
        bar.set_position(rows)
    })?;
    bar.finish_and_clear();
    let mean_active: f32 = truth.frequencies.iter().sum();
    println!(
        "planted {} features in {} dims ({:.1}x superposition, {:.2} active per token, max |cos| {:.3}) over {} tokens in {:.1}s -> {}",
        a.features, a.dims, a.features as f64 / a.dims as f64, mean_active, truth.max_cosine, a.tokens, t0.elapsed().as_secs_f64(), a.out.display()
    );
    Ok(())
}

/// The synth progress bar over `rows` rows: rate and ETA.
fn synth_bar(rows: u64) -> indicatif::ProgressBar {
    let bar = cmd_train::progress_bar(
        "{spinner} synth [{bar:30}] {human_pos}/{human_len} tokens  {per_sec}  {elapsed} ETA {eta}",
    );
    bar.set_length(rows);
    bar
}

/// Peak bytes of `synth` (planted features), estimated from its flags: the directions and their
/// copies in the truth file (3 × features × dims f32), a shard's rows buffered and encoded by the
/// writer (3 × shard-tokens × dims f32), and with --save-activations every (token, feature,
/// value) triple (~40 bytes each, expected tokens × density × features of them).
fn synth_memory_bytes(a: &SynthArgs) -> u64 {
    use unravel::memory::product;
    let (n, d) = (a.features as u64, a.dims as u64);
    let mut bytes = product(&[12, n, d]).saturating_add(product(&[12, a.shard_tokens as u64, d]));
    if a.save_activations {
        let triples = (a.tokens as f64 * a.density * n as f64).min(u64::MAX as f64 / 64.0) as u64;
        bytes = bytes.saturating_add(product(&[40, triples]));
    }
    bytes
}

fn synth_neurons(a: &SynthArgs, n: usize) -> Result<()> {
    use unravel::synth::neurons::NeuronSpec;
    let mut spec = NeuronSpec::new(n, a.tokens, a.seed);
    spec.concepts = a.concepts;
    spec.concept_density = a.concept_density;
    spec.polysemantic = a.polysemantic;
    spec.monosemantic = a.monosemantic;
    spec.dead = a.dead;
    spec.distractor = a.distractor;
    spec.k_max = a.k_max;
    spec.miss = a.miss;
    spec.spurious = a.spurious;
    spec.overlap = a.overlap;
    spec.noise = if a.noise > 0.0 { a.noise } else { spec.noise };
    spec.shard_tokens = a.shard_tokens;
    spec.check().map_err(|e| anyhow::anyhow!(e))?;
    // A shard's rows, buffered and encoded (3 × shard-tokens × neurons f32).
    unravel::memory::check_fits(
        &format!("--neurons {n} (--shard-tokens {})", a.shard_tokens),
        unravel::memory::product(&[12, a.shard_tokens as u64, n as u64]),
        "lower --neurons or --shard-tokens",
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let t0 = std::time::Instant::now();
    let bar = synth_bar(spec.tokens.div_ceil(spec.ctx as u64) * spec.ctx as u64);
    let truth = unravel::synth::neurons::write_neurons_with_progress(&spec, &a.out, &mut |rows| {
        bar.set_position(rows)
    })?;
    bar.finish_and_clear();
    let count = |c: &str| truth.neurons.iter().filter(|p| p.class == c).count();
    println!(
        "planted {n} neurons ({} polysemantic, {} monosemantic, {} distractors, {} unexplained, {} dead) over {} concepts and {} tokens in {:.1}s -> {}",
        count("polysemantic"), count("monosemantic"), count("distractor"), count("unexplained"), count("dead"),
        spec.concepts, a.tokens, t0.elapsed().as_secs_f64(), a.out.display()
    );
    Ok(())
}

const EXTRACT_EXAMPLES: &str = "Examples:\n  \
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
token_id, token, special, label.*, and one fixed_size_list column per hook; manifest.json beside them.";

#[derive(Args)]
struct ExtractArgs {
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
    #[arg(long, default_value_t = 128, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    ctx: usize,
    /// GPT-2: do not start contexts with <|endoftext|> (documents stay separated by it).
    #[arg(long)]
    no_bos: bool,
    /// Stop after this many tokens (whole contexts); default: the whole corpus.
    #[arg(long, value_name = "N", value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    max_tokens: Option<u64>,
    /// Storage dtype of the hook columns: f16, bf16 or f32.
    #[arg(long, default_value = "f16")]
    store_dtype: String,
    /// Contexts per forward pass.
    #[arg(long, default_value_t = 8, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    batch: usize,
    /// Rows (tokens) per shard.
    #[arg(long, default_value_t = 65536, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
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

#[derive(Args)]
struct InspectArgs {
    /// Dataset folder (with manifest.json).
    dir: PathBuf,
    /// Re-hash every shard and check its parquet footer.
    #[arg(long)]
    verify: bool,
    /// Show this many rows of the first shard.
    #[arg(long, default_value_t = 3, value_parser = crate::cmd_values::whole::<usize>, allow_negative_numbers = true)]
    rows: usize,
}

#[derive(Args)]
struct MergeArgs {
    /// Dataset folder that receives manifest.json.
    dir: PathBuf,
    /// Folders holding the part manifests (default: the dataset folder itself).
    #[arg(long, num_args = 1..)]
    parts: Vec<PathBuf>,
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
    #[arg(long, default_value_t = 0, value_parser = crate::cmd_values::whole::<u64>, allow_negative_numbers = true)]
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
        Ok(TextTokenizer::from_file(&self.tokenizer_path(files)?)?)
    }

    fn tokenizer_path(&self, files: &load::ModelFiles) -> Result<PathBuf> {
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
        Ok(path)
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
    #[arg(long, default_value_t = 8, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
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

fn cmd_extract(a: &ExtractArgs) -> Result<()> {
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
        cmd_train::progress_bar(
            "{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
        )
    } else {
        let bar =
            cmd_train::progress_bar("{spinner} [{elapsed_precise}] {human_pos} rows  {per_sec}");
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
    Ok(())
}

fn cmd_inspect(a: &InspectArgs) -> Result<()> {
    // Inspecting shows an incomplete dataset (the summary says so) rather than refusing it.
    let options = unravel::store::ReadOptions {
        allow_incomplete: true,
        skip_nonfinite: false,
    };
    let ds = unravel::store::Dataset::open_with(&a.dir, options)?;
    print!("{}", unravel::store::inspect::summary(&ds));
    if a.verify {
        ds.verify()?;
        println!("verified: every shard's sha256, footer and columns match the manifest");
    }
    if a.rows > 0 {
        print!("{}", unravel::store::inspect::preview(&ds, a.rows)?);
    }
    Ok(())
}

fn cmd_merge(a: &MergeArgs) -> Result<()> {
    let _lock = lock_output("merge-manifests", &a.dir, "merge-manifests")?;
    let parts = if a.parts.is_empty() {
        vec![a.dir.clone()]
    } else {
        a.parts.clone()
    };
    let m = unravel::store::merge_part_folders(&a.dir, &parts)?;
    println!(
        "merged {} shards, {} tokens -> {}",
        m.shards.len(),
        m.totals.rows,
        a.dir.join(unravel::store::MANIFEST_FILE).display()
    );
    Ok(())
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

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`unravel verify ... | head`) like other Unix tools, instead of
    // panicking in println!.
    #[cfg(unix)]
    // Safety: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => cmd_run::cmd_run(a, check_args),
        Command::Trace(a) => cmd_trace(a),
        Command::Extract(a) => cmd_extract(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::MergeManifests(a) => cmd_merge(a),
        Command::Train(a) => cmd_train::cmd_train(a),
        Command::Eval(a) => cmd_train::cmd_eval(a),
        Command::Synth(a) => cmd_synth(a),
        Command::Verify(a) => cmd_train::cmd_verify(a),
        Command::Plant(a) => cmd_plant(a),
        Command::Audit(a) => cmd_audit::cmd_audit(a),
        Command::Analyze(a) => cmd_analyze::cmd_analyze(a),
        Command::Toy(a) => cmd_toy::cmd_toy(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors often repeat their source in their own
/// message (`{0}` and `#[source]`), so a cause already said is not said again.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}
