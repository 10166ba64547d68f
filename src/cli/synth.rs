//! `unravel synth`: a dataset of planted superposed features (or planted neurons) with its truth.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::cli::progress::progress_bar;
use unravel::folder_lock::lock_output;

pub const SYNTH_EXAMPLES: &str = "Examples:\n  \
# 512 features in 256 dims, each active with probability 0.1, Exponential(1) magnitudes\n  \
unravel synth --features 512 --dims 256 --density 0.1 --tokens 1000000 --seed 7 --out synth/seed000\n  \
unravel train --acts synth/seed000 --d-sae 1024 --tokens 1000000 --out runs/seed000\n\n  \
# planted polysemantic neurons: the audit's ground truth\n  \
unravel synth --neurons 256 --concepts 16 --tokens 200000 --out synth/neurons\n  \
unravel audit --acts synth/neurons --out audits/planted\n  \
unravel verify --truth synth/neurons --audit audits/planted --min-precision 0.95 --min-recall 0.95\n\n  \
# the SynthSAEBench generator (Zipf, hierarchy, correlation), small; --preset synth-sae-bench-16k is the\n  \
# benchmark itself (16,384 features in 768 dims, true L0 ≈ 34)\n  \
unravel synth --preset synth-sae-bench-tiny --tokens 20000 --out synth/bench-tiny\n\n\
The dataset has one hook column, `synthetic`; the ground truth (directions [features, dims],\n\
frequencies [features]) is in OUT/__unravel__/truth/ground_truth.safetensors. With --neurons: hook\n\
`neurons`, label columns label.c00 ..., truth in OUT/__unravel__/truth/neurons.json. With --preset/--spec:\n\
truth also holds bias, probabilities, magnitudes, parent (the hierarchy), spec.toml and stats.json (true L0,\n\
exclusion checks).";

#[derive(Args)]
pub struct SynthArgs {
    /// Planted features (directions) [default: 512; the generator's: its preset's].
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    features: Option<usize>,
    /// Dimensions of the activation space [default: 256; the generator's: its preset's].
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    dims: Option<usize>,
    /// Probability that a feature is active on a token.
    #[arg(long, default_value_t = 0.1, value_parser = crate::cli::values::probability, allow_negative_numbers = true)]
    density: f64,
    /// Rows (tokens) to write.
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::cli::values::at_least_1::<u64>, allow_negative_numbers = true)]
    tokens: u64,
    /// Random seed [default: 0; the generator's: its preset's].
    #[arg(long, value_parser = crate::cli::values::whole::<u64>, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Standard deviation of additive Gaussian noise per dimension.
    #[arg(long, default_value_t = 0.0, value_parser = crate::cli::values::non_negative_f32, allow_negative_numbers = true)]
    noise: f32,
    /// Rows per shard.
    #[arg(long, default_value_t = 65536, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    shard_tokens: usize,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    store_dtype: String,
    /// Magnitude distribution when active: exponential, uniform or half-normal (all mean 1).
    #[arg(long, default_value = "exponential")]
    magnitude: String,
    /// Power-law frequencies: feature i is active with probability density · decay^i.
    #[arg(long, value_name = "DECAY", value_parser = crate::cli::values::probability, allow_negative_numbers = true)]
    power_law: Option<f64>,
    /// Importance of feature i = decay^i, scaling its magnitude (1 = all equal).
    #[arg(long, default_value_t = 1.0, value_name = "DECAY", value_parser = crate::cli::values::positive_f32, allow_negative_numbers = true)]
    importance_decay: f32,
    /// Directions with no pair closer than this |cosine| (pushed apart), instead of random.
    #[arg(long, value_name = "COS", value_parser = crate::cli::values::probability_f32, allow_negative_numbers = true)]
    max_cosine: Option<f32>,
    /// Directions in this many near-parallel clusters (see --cluster-spread).
    #[arg(long, value_name = "K", value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    clusters: Option<usize>,
    /// Spread of a cluster: member = centre + spread × random unit vector.
    #[arg(long, default_value_t = 0.2, value_parser = crate::cli::values::non_negative_f32, allow_negative_numbers = true)]
    cluster_spread: f32,
    /// Co-firing groups of this many consecutive features.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    group_size: usize,
    /// Mutually exclusive sets of this many consecutive features (one member at a time).
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    exclusive_size: usize,
    /// Also store every token's feature activations in the truth file (sparse).
    #[arg(long)]
    save_activations: bool,
    /// Planted polysemantic neurons instead of features: this many neurons (hook `neurons`,
    /// one label column per concept, truth in OUT/__unravel__/truth/neurons.json).
    #[arg(long, value_name = "N", help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    neurons: Option<usize>,
    /// Concepts (label columns c00, c01, ...).
    #[arg(
        long,
        default_value_t = 16,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    concepts: usize,
    /// Probability that a token carries a concept.
    #[arg(
        long,
        default_value_t = 0.05,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::probability, allow_negative_numbers = true)]
    concept_density: f64,
    /// Fraction of neurons responding to 2..=K-MAX unrelated concepts.
    #[arg(
        long,
        default_value_t = 0.3,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    polysemantic: f64,
    /// Fraction responding to one concept.
    #[arg(
        long,
        default_value_t = 0.3,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    monosemantic: f64,
    /// Fraction that never fire (the rest fire at random: unexplained).
    #[arg(
        long,
        default_value_t = 0.05,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
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
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    k_max: usize,
    /// Probability that a neuron misses a token of its concept.
    #[arg(
        long,
        default_value_t = 0.1,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    miss: f64,
    /// Probability of a spurious Exp(1) firing on any token.
    #[arg(
        long,
        default_value_t = 0.01,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    spurious: f64,
    /// Concept 2i+1 also joins concept 2i's tokens with this probability (co-occurrence).
    #[arg(
        long,
        default_value_t = 0.0,
        help_heading = "Planted neurons (--neurons)", value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    overlap: f64,
    /// Output dataset folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    bench: crate::cli::synth_bench::BenchArgs,
}

pub fn cmd_synth(a: &SynthArgs) -> Result<()> {
    let _lock = lock_output("--out", &a.out, "synth")?;
    if unravel::store::manifest_path(&a.out).exists() {
        bail!(
            "--out {}: already holds a dataset; choose another folder",
            a.out.display()
        );
    }
    if a.bench.active() {
        if a.neurons.is_some() {
            bail!("--neurons and the generator's flags (--preset, --spec, ...) exclude each other");
        }
        let spec = a.bench.spec(a.features, a.dims, a.seed)?;
        let opts = unravel::synth::bench::write::WriteOptions {
            tokens: a.tokens,
            shard_tokens: a.shard_tokens,
            dtype: a
                .store_dtype
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--store-dtype: {e}"))?,
            save_activations: a.save_activations,
        };
        return crate::cli::synth_bench::write(&spec, opts, &a.out);
    }
    if let Some(n) = a.neurons {
        return synth_neurons(a, n);
    }
    let (features, dims) = (a.features.unwrap_or(512), a.dims.unwrap_or(256));
    let mut spec =
        unravel::synth::PlantedSpec::new(features, dims, a.density, a.tokens, a.seed.unwrap_or(0));
    spec.noise = a.noise;
    spec.magnitude = a
        .magnitude
        .parse()
        .map_err(|e: unravel::synth::SynthError| anyhow::anyhow!("--magnitude {e}"))?;
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
            features,
            dims,
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
        features, dims, features as f64 / dims as f64, mean_active, truth.max_cosine, a.tokens, t0.elapsed().as_secs_f64(), a.out.display()
    );
    Ok(())
}

/// The synth progress bar over `rows` rows: rate and ETA.
fn synth_bar(rows: u64) -> indicatif::ProgressBar {
    let bar = progress_bar(
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
    let (n, d) = (
        a.features.unwrap_or(512) as u64,
        a.dims.unwrap_or(256) as u64,
    );
    let mut bytes = product(&[12, n, d]).saturating_add(product(&[12, a.shard_tokens as u64, d]));
    if a.save_activations {
        let triples = (a.tokens as f64 * a.density * n as f64).min(u64::MAX as f64 / 64.0) as u64;
        bytes = bytes.saturating_add(product(&[40, triples]));
    }
    bytes
}

fn synth_neurons(a: &SynthArgs, n: usize) -> Result<()> {
    use unravel::synth::neurons::NeuronSpec;
    let mut spec = NeuronSpec::new(n, a.tokens, a.seed.unwrap_or(0));
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
