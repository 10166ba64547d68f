//! `unravel analyze`: flags → `analysis::analyze` (superposition metrics of every chosen hook, one
//! streaming pass) or `analysis::weights` (--weights) → the JSON, a per-layer table and plots.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use unravel::analysis::analysis_report::{
    spectrum_plot_file, AnalysisReport, ANALYSIS_FILE, LAYERS_PLOT_FILE, SPECTRA_PLOT_FILE,
};
use unravel::analysis::analyze::{
    analyze, Analysis, AnalyzeError, AnalyzeObserver, AnalyzeOptions,
};
use unravel::analysis::weights::{weight_spectra, WEIGHTS_FILE};
use unravel::report::plots;
use unravel::store::Dataset;

use crate::cli::output;
use crate::cli::progress::progress_bar;

pub const ANALYZE_EXAMPLES: &str = "Examples:\n  \
# every hook of a dataset: effective dimensionality, effective rank, sparsity, interference\n  \
unravel analyze --acts acts/gpt2-resid --out analysis/gpt2-resid\n  \
# one layer, 95% variance for the effective rank, at most 1M tokens\n  \
unravel analyze --acts acts/gpt2-resid --hooks blocks.6.hook_resid_post --rank-threshold 0.95 --max-tokens 1000000 --out analysis/l6\n  \
# singular value spectra and effective rank of every weight matrix\n  \
unravel analyze --weights gpt2 --out analysis/gpt2-weights\n\n\
Writes OUT/analysis.json (every number, eigenvalues included), OUT/layers.svg (effective rank / d\n\
and participation ratio / d against hook), and per hook spectrum, PCA and correlation-heatmap SVGs.";

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Activation dataset folder.
    #[arg(long, value_name = "DIR", required_unless_present = "weights")]
    acts: Option<PathBuf>,
    #[command(flatten)]
    read: crate::cli::read_args::ReadArgs,
    /// Instead of activations: the singular value spectrum and effective rank of every weight
    /// matrix of a model (local folder or hub repo id; read from the cache when offline).
    #[arg(long, value_name = "MODEL", conflicts_with = "acts")]
    weights: Option<String>,
    /// Hook names or globs, comma separated (default: every hook of the dataset).
    #[arg(long, value_name = "PATTERNS")]
    hooks: Option<String>,
    /// Fraction of the variance the effective rank must explain.
    #[arg(long, default_value_t = 0.99, value_parser = crate::cli::values::open_fraction, allow_negative_numbers = true)]
    rank_threshold: f64,
    /// |a| below this counts as zero for the sparsity.
    #[arg(long, default_value_t = 1e-6, value_parser = crate::cli::values::positive_f32, allow_negative_numbers = true)]
    epsilon: f32,
    /// Use at most this many tokens (special rows excluded).
    #[arg(long, value_parser = crate::cli::values::at_least_1::<u64>, allow_negative_numbers = true)]
    max_tokens: Option<u64>,
    /// Colour the PCA scatter by this label column of the shards (e.g. label.sentiment).
    #[arg(long, value_name = "COLUMN")]
    color_by: Option<String>,
    /// Rows projected for the PCA scatter.
    #[arg(long, default_value_t = 2000, value_parser = crate::cli::values::whole::<usize>, allow_negative_numbers = true)]
    pca_points: usize,
    /// Dimensions in the correlation heatmap.
    #[arg(long, default_value_t = 64, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    heatmap_dims: usize,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// `--weights`: every 2-D tensor of the model's safetensors files.
fn analyze_weights(a: &AnalyzeArgs, spec: &str) -> Result<()> {
    let files = unravel::models::load::resolve(spec, &unravel::hub::HubOptions::default(), true)
        .map_err(|e| anyhow!("--weights {e}"))?;
    if files.weights.is_empty() {
        bail!("--weights {spec}: no safetensors weights found");
    }
    let report = weight_spectra(&files.id, &files.weights, a.rank_threshold)
        .map_err(|e| anyhow!("--weights {e}"))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let path = a.out.join(WEIGHTS_FILE);
    output::write(&path, report.to_json().as_bytes(), || {
        format!("writing {}", path.display())
    })?;
    // One spectrum per matrix kind (the name without its layer number), normalised by σ_max.
    for (kind, series) in &report.normalised_by_kind() {
        plots::spectrum(
            &a.out
                .join(format!("weights-{}.svg", kind.replace(['/', '*'], "_"))),
            series,
            &format!("{kind}: singular values / largest"),
            "σ / σ_max (log10)",
        )
        .map_err(|e| anyhow!("writing plots into {}: {e}", a.out.display()))?;
    }
    println!(
        "{} weight matrices of {} (effective rank at {:.0}% of Σσ²):",
        report.matrices.len(),
        report.model,
        100.0 * a.rank_threshold
    );
    println!(
        "  {:<44} {:>12} {:>9} {:>6}",
        "matrix", "shape", "eff.rank", "ratio"
    );
    for m in &report.matrices {
        println!(
            "  {:<44} {:>12} {:>9} {:>6.3}",
            m.name,
            format!("{}x{}", m.shape[0], m.shape[1]),
            m.effective_rank,
            m.rank_ratio
        );
    }
    println!("wrote {}/weights.json and plots", a.out.display());
    Ok(())
}

/// The row-group bar: tokens so far and their rate.
struct Bar {
    bar: indicatif::ProgressBar,
    t0: std::time::Instant,
}

impl AnalyzeObserver for Bar {
    fn started(&mut self, row_groups: u64) {
        self.bar.set_length(row_groups);
        self.t0 = std::time::Instant::now();
    }
    fn row_group_done(&mut self, tokens: u64) {
        self.bar.inc(1);
        self.bar.set_message(format!(
            "{tokens} tokens, {:.0} tok/s",
            tokens as f64 / self.t0.elapsed().as_secs_f64().max(1e-9)
        ));
    }
}

pub fn cmd_analyze(a: &AnalyzeArgs) -> Result<()> {
    if !(a.rank_threshold > 0.0 && a.rank_threshold <= 1.0) {
        bail!("--rank-threshold {}: must be in (0, 1]", a.rank_threshold);
    }
    let _lock = unravel::folder_lock::lock_output("--out", &a.out, "analyze")?;
    let acts = match (&a.acts, &a.weights) {
        (_, Some(spec)) => return analyze_weights(a, spec),
        (Some(acts), None) => acts,
        (None, None) => bail!("give --acts DIR or --weights MODEL"),
    };
    let ds = Dataset::open_with(acts, a.read.options())
        .with_context(|| format!("--acts {}", acts.display()))?;
    let opts = AnalyzeOptions {
        hooks: a.hooks.clone(),
        rank_threshold: a.rank_threshold,
        epsilon: a.epsilon,
        max_tokens: a.max_tokens,
        color_by: a.color_by.clone(),
        pca_points: a.pca_points,
        heatmap_dims: a.heatmap_dims,
    };
    let mut bar = Bar {
        bar: progress_bar(
            "{spinner} analyze [{bar:30}] {pos}/{len} row groups  {msg}  {elapsed} ETA {eta}",
        ),
        t0: std::time::Instant::now(),
    };
    let result = analyze(&ds, &opts, &mut bar);
    bar.bar.finish_and_clear();
    let analysis = result.map_err(|e| match e {
        AnalyzeError::BadPattern { .. } | AnalyzeError::NoHookMatches { .. } => {
            anyhow!("--hooks {e}")
        }
        AnalyzeError::NotALabelColumn { .. } => anyhow!("--color-by {e}"),
        AnalyzeError::NoRows => anyhow!("--acts {}: {e}", acts.display()),
        e => e.into(),
    })?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let path = a.out.join(ANALYSIS_FILE);
    let report = AnalysisReport::new(&analysis, acts, &ds);
    output::write(&path, report.to_json().as_bytes(), || {
        format!("writing {}", path.display())
    })?;
    write_plots(a, &analysis)?;
    print_table(a, acts, &analysis, bar.t0.elapsed().as_secs_f64());
    Ok(())
}

/// Spectrum, PCA and correlation plots of each hook; with several hooks, the per-layer plot and
/// all spectra in one.
fn write_plots(a: &AnalyzeArgs, analysis: &Analysis) -> Result<()> {
    let (names, metrics) = (&analysis.hooks, &analysis.metrics);
    let colors = analysis.colors.as_deref();
    let plot = |r: Result<(), plots::PlotError>| {
        r.map_err(|e| anyhow!("writing plots into {}: {e}", a.out.display()))
    };
    for (name, m) in names.iter().zip(metrics) {
        let file = name.replace(['/', '*'], "_");
        plot(plots::spectrum(
            &a.out.join(spectrum_plot_file(name)),
            &[(name.clone(), m.eigenvalues.clone())],
            &format!("{name}: covariance spectrum"),
            "eigenvalue (log10)",
        ))?;
        plot(plots::scatter(
            &a.out.join(format!("pca-{file}.svg")),
            &m.pca_2d,
            colors.map(|c| &c[..c.len().min(m.pca_2d.len())]),
            &format!("{name}: PCA"),
            ("PC1", "PC2"),
        ))?;
        plot(plots::heatmap(
            &a.out.join(format!("interference-{file}.svg")),
            &m.correlation_block,
            &format!(
                "{name}: correlation, first {} dims",
                m.correlation_block.len()
            ),
        ))?;
    }
    if names.len() > 1 {
        let (layers, series) = layer_series(names, metrics);
        plot(plots::per_layer(
            &a.out.join(LAYERS_PLOT_FILE),
            &layers,
            &series,
            "Effective rank and dimensionality per layer",
        ))?;
        plot(plots::spectrum(
            &a.out.join(SPECTRA_PLOT_FILE),
            &names
                .iter()
                .cloned()
                .zip(metrics.iter().map(|m| m.eigenvalues.clone()))
                .collect::<Vec<_>>(),
            "Covariance spectra",
            "eigenvalue (log10)",
        ))?;
    }
    Ok(())
}

/// The per-hook table.
fn print_table(a: &AnalyzeArgs, acts: &Path, analysis: &Analysis, secs: f64) {
    println!(
        "{} tokens of {} ({secs:.1}s); effective rank at {:.0}% of the variance:",
        analysis.tokens,
        acts.display(),
        100.0 * a.rank_threshold
    );
    println!(
        "  {:<32} {:>6} {:>9} {:>6} {:>11} {:>9} {:>12}",
        "hook", "units", "eff.rank", "ratio", "eff.dim(PR)", "sparsity", "interference"
    );
    for (name, m) in analysis.hooks.iter().zip(&analysis.metrics) {
        println!(
            "  {name:<32} {:>6} {:>9} {:>6.3} {:>11.2} {:>9.4} {:>12.4}",
            m.d,
            m.effective_rank,
            m.rank_ratio,
            m.effective_dimensionality,
            m.sparsity,
            m.interference
        );
    }
    println!("wrote {}/analysis.json and plots", a.out.display());
}

/// The x axis of layers.svg (layer numbers; hooks outside a block by name, embed first) and one
/// series per metric × hook kind (`mlp.post`, `resid_post`, ...), so the MLP and residual hooks
/// of a layer are separate lines.
#[allow(clippy::type_complexity)]
fn layer_series(
    names: &[String],
    metrics: &[unravel::analysis::superposition::HookMetrics],
) -> (Vec<String>, Vec<(String, usize, Vec<Option<f64>>)>) {
    let place = |name: &str| -> (String, String) {
        match name.strip_prefix("blocks.").and_then(|r| r.split_once('.')) {
            Some((layer, kind)) => (layer.to_string(), kind.replace("hook_", "")),
            None => (name.replace("hook_", ""), "other".to_string()),
        }
    };
    let mut layers: Vec<String> = vec![];
    let mut kinds: Vec<String> = vec![];
    for n in names {
        let (layer, kind) = place(n);
        if !layers.contains(&layer) {
            layers.push(layer);
        }
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let value = |m: &unravel::analysis::superposition::HookMetrics, metric: usize| {
        if metric == 0 {
            m.rank_ratio
        } else {
            m.effective_dimensionality / m.d as f64
        }
    };
    let mut series = vec![];
    for (metric, label) in ["effective rank / d", "participation ratio / d"]
        .iter()
        .enumerate()
    {
        for kind in &kinds {
            let mut v = vec![None; layers.len()];
            for (n, m) in names.iter().zip(metrics) {
                let (layer, k) = place(n);
                if &k == kind {
                    let x = layers.iter().position(|l| *l == layer).unwrap_or(0);
                    v[x] = Some(value(m, metric));
                }
            }
            series.push((format!("{label} ({kind})"), metric, v));
        }
    }
    (layers, series)
}
