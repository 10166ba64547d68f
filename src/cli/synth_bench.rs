//! `unravel synth --preset/--spec`: the SynthSAEBench-grade generator's flags (each also a key
//! of a spec file, spelled the same) and writing its dataset.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::Args;

use crate::cli::progress::progress_bar;
use unravel::synth::bench::{BenchModel, BenchSpec};

/// The generator's flags; any of them switches `unravel synth` to it. Each overrides the
/// preset's or the spec file's value.
#[derive(Args, Default)]
#[command(next_help_heading = "SynthSAEBench generator (--preset, --spec or any flag below)")]
pub struct BenchArgs {
    /// Start from a preset: synth-sae-bench-16k (SynthSAEBench-16k: 16,384 features in 768
    /// dims, true L0 ≈ 34) or synth-sae-bench-tiny (1,024 in 96).
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Start from a spec TOML file (keys as these flags; `preset = "..."` for a base).
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Zipf exponent of the firing probabilities.
    #[arg(long, value_parser = crate::cli::values::positive_f64, allow_negative_numbers = true)]
    zipf_exponent: Option<f64>,
    /// Firing probability of the most frequent feature.
    #[arg(long, value_parser = crate::cli::values::probability, allow_negative_numbers = true)]
    p_max: Option<f64>,
    /// Firing probability of the rarest feature.
    #[arg(long, value_parser = crate::cli::values::probability, allow_negative_numbers = true)]
    p_min: Option<f64>,
    /// Hierarchy trees (0: none); their nodes are the most frequent features, breadth first.
    #[arg(long, value_parser = crate::cli::values::whole::<usize>, allow_negative_numbers = true)]
    roots: Option<usize>,
    /// Children per parent in the hierarchy.
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    branching: Option<usize>,
    /// Levels below a root.
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    depth: Option<usize>,
    /// Share of parents whose children are mutually exclusive.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    exclusive: Option<f64>,
    /// Raise children's probabilities to make up for gating and exclusion (true/false).
    #[arg(long, value_name = "BOOL")]
    compensate: Option<bool>,
    /// Scale a child's activation by parent activation / parent mean (true/false).
    #[arg(long, value_name = "BOOL")]
    scale_children: Option<bool>,
    /// Rank of the correlation of firing (0: independent).
    #[arg(long, value_parser = crate::cli::values::whole::<usize>, allow_negative_numbers = true)]
    correlation_rank: Option<usize>,
    /// Std of the correlation factor's entries.
    #[arg(long, value_parser = crate::cli::values::non_negative_f64, allow_negative_numbers = true)]
    correlation_scale: Option<f64>,
    /// Adam steps orthogonalising the dictionary (0: random directions).
    #[arg(long, value_parser = crate::cli::values::whole::<usize>, allow_negative_numbers = true)]
    ortho_steps: Option<usize>,
    /// Learning rate of the orthogonalisation.
    #[arg(long, value_parser = crate::cli::values::positive_f64, allow_negative_numbers = true)]
    ortho_lr: Option<f64>,
    /// Mean magnitude of the most frequent feature (linear to --mean-end for the rarest).
    #[arg(long, value_parser = crate::cli::values::positive_f64, allow_negative_numbers = true)]
    mean_start: Option<f64>,
    /// Mean magnitude of the rarest feature.
    #[arg(long, value_parser = crate::cli::values::positive_f64, allow_negative_numbers = true)]
    mean_end: Option<f64>,
    /// Each feature's magnitude std is |N(std-mean, std-std²)|.
    #[arg(long, value_parser = crate::cli::values::non_negative_f64, allow_negative_numbers = true)]
    std_mean: Option<f64>,
    #[arg(long, value_parser = crate::cli::values::positive_f64, allow_negative_numbers = true)]
    std_std: Option<f64>,
    /// Norm of the bias added to every row.
    #[arg(long, value_parser = crate::cli::values::non_negative_f64, allow_negative_numbers = true)]
    bias_norm: Option<f64>,
}

impl BenchArgs {
    /// Whether any generator flag was given.
    pub fn active(&self) -> bool {
        let o = |x: Option<f64>| x.is_some();
        self.preset.is_some()
            || self.spec.is_some()
            || [self.zipf_exponent, self.p_max, self.p_min, self.exclusive]
                .into_iter()
                .any(o)
            || [
                self.correlation_scale,
                self.ortho_lr,
                self.mean_start,
                self.mean_end,
            ]
            .into_iter()
            .any(o)
            || [self.std_mean, self.std_std, self.bias_norm]
                .into_iter()
                .any(o)
            || [
                self.roots,
                self.branching,
                self.depth,
                self.correlation_rank,
                self.ortho_steps,
            ]
            .iter()
            .any(Option::is_some)
            || self.compensate.is_some()
            || self.scale_children.is_some()
    }

    /// The spec: the preset or file (else SynthSAEBench-16k), then every flag given, then
    /// features, dims and seed when given.
    pub fn spec(
        &self,
        features: Option<usize>,
        dims: Option<usize>,
        seed: Option<u64>,
    ) -> Result<BenchSpec> {
        let mut s = match (&self.preset, &self.spec) {
            (Some(_), Some(_)) => anyhow::bail!("give --preset or --spec, not both"),
            (Some(p), None) => BenchSpec::preset(p).map_err(|e| anyhow!("--preset {e}"))?,
            (None, Some(f)) => {
                let f = f.to_string_lossy();
                BenchSpec::load(&f).map_err(|e| anyhow!("--spec {e}"))?
            }
            (None, None) => BenchSpec::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { s.$f = v; })* };
        }
        set!(
            zipf_exponent,
            p_max,
            p_min,
            roots,
            branching,
            depth,
            exclusive,
            compensate,
            scale_children,
            correlation_rank,
            correlation_scale,
            ortho_steps,
            ortho_lr,
            mean_start,
            mean_end,
            std_mean,
            std_std,
            bias_norm
        );
        s.features = features.unwrap_or(s.features);
        s.dims = dims.unwrap_or(s.dims);
        s.seed = seed.unwrap_or(s.seed);
        s.check().map_err(|e| anyhow!(e))?;
        Ok(s)
    }
}

/// Peak bytes: the dictionary and the orthogonalisation's three copies of it, and a batch of
/// rows buffered and encoded by the writer.
fn memory_bytes(spec: &BenchSpec, shard_tokens: usize) -> u64 {
    use unravel::memory::product;
    let (n, d) = (spec.features as u64, spec.dims as u64);
    product(&[20, n, d]).saturating_add(product(&[12, shard_tokens as u64, d]))
}

/// Builds the model (orthogonalisation with a progress bar) and writes `tokens` rows into `out`.
pub fn write(
    spec: &BenchSpec,
    opts: unravel::synth::bench::write::WriteOptions,
    out: &Path,
) -> Result<()> {
    unravel::memory::check_fits(
        &format!("--features {} × --dims {}", spec.features, spec.dims),
        memory_bytes(spec, opts.shard_tokens),
        "lower --features, --dims or --shard-tokens",
    )
    .map_err(|e| anyhow!(e))?;
    let t0 = std::time::Instant::now();
    let model = build_model(spec);
    let bar = progress_bar(
        "{spinner} synth [{bar:30}] {human_pos}/{human_len} tokens  {per_sec}  {elapsed} ETA {eta}",
    );
    bar.set_length(opts.tokens.div_ceil(64) * 64);
    let stats = unravel::synth::bench::write::write_bench(&model, &opts, out, &mut |rows| {
        bar.set_position(rows)
    })?;
    bar.finish_and_clear();
    println!(
        "generated {} rows of {} ({} features in {} dims): true L0 {:.2} ({:.2} among the first 4096), \
         {} orphaned children, {} exclusion violations, in {:.1}s -> {}",
        stats.rows, spec.fingerprint(), spec.features, spec.dims, stats.l0, stats.l0_first_4096,
        stats.orphans, stats.exclusion_violations, t0.elapsed().as_secs_f64(), out.display()
    );
    Ok(())
}

/// The model of `spec`, its dictionary orthogonalised under a progress bar.
pub fn build_model(spec: &BenchSpec) -> BenchModel {
    let bar = progress_bar("{spinner} orthogonalising [{bar:30}] {pos}/{len} steps  ETA {eta}");
    bar.set_length(spec.ortho_steps as u64);
    let model = BenchModel::build(spec, &mut |step, _| bar.set_position(step as u64));
    bar.finish_and_clear();
    model
}
