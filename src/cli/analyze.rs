//! `unravel analyze`: superposition metrics of every chosen hook of a dataset, one streaming pass;
//! a per-layer table and plots.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::Array;
use clap::Args;

use unravel::analysis::superposition::{CovarianceAcc, HookMetrics};
use unravel::report::plots;
use unravel::store::Dataset;

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

/// The hooks matching the comma-separated patterns, in dataset order.
fn select_hooks(ds: &Dataset, patterns: Option<&str>) -> Result<Vec<unravel::store::HookInfo>> {
    let all = &ds.manifest().hooks;
    let Some(p) = patterns else {
        return Ok(all.clone());
    };
    let mut out = vec![];
    for pat in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let glob = globset::Glob::new(pat)
            .map_err(|e| anyhow!("--hooks {pat}: {e}"))?
            .compile_matcher();
        let hits: Vec<_> = all.iter().filter(|h| glob.is_match(&h.name)).collect();
        if hits.is_empty() {
            bail!(
                "--hooks {pat}: matches no hook of the dataset (it has: {})",
                all.iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for h in hits {
            if !out
                .iter()
                .any(|o: &unravel::store::HookInfo| o.name == h.name)
            {
                out.push(h.clone());
            }
        }
    }
    Ok(out)
}

/// `--weights`: every 2-D tensor of the model's safetensors files.
fn analyze_weights(a: &AnalyzeArgs, spec: &str) -> Result<()> {
    let files =
        unravel::models::load::resolve(spec, &unravel::models::load::HubOptions::default(), true)
            .map_err(|e| anyhow!("--weights {e}"))?;
    if files.weights.is_empty() {
        bail!("--weights {spec}: no safetensors weights found");
    }
    let mut rows = vec![];
    for file in &files.weights {
        let tensors = candle_core::safetensors::load(file, &candle_core::Device::Cpu)
            .map_err(|e| anyhow!("--weights {}: {e}", file.display()))?;
        for (name, t) in tensors {
            let &[r, c] = t.dims() else { continue };
            if r < 2 || c < 2 {
                continue;
            }
            let w: Vec<f32> = t
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .map_err(|e| anyhow!("--weights {}: tensor {name}: {e}", file.display()))?;
            let (sv, rank) =
                unravel::analysis::superposition::weight_spectrum(&w, r, c, a.rank_threshold);
            rows.push((name, [r, c], sv, rank));
        }
    }
    // Natural order: h.2 before h.10.
    let key = |n: &str| -> Vec<(String, u64)> {
        n.split('.')
            .map(|p| {
                p.parse::<u64>()
                    .map_or((p.to_string(), 0), |v| (String::new(), v))
            })
            .collect()
    };
    rows.sort_by_key(|x| key(&x.0));
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let json = serde_json::json!({
        "model": files.id,
        "rank_threshold": a.rank_threshold,
        "matrices": rows.iter().map(|(n, s, sv, rank)| serde_json::json!({
            "name": n, "shape": s, "effective_rank": rank,
            "rank_ratio": *rank as f64 / s[0].min(s[1]) as f64, "singular_values": sv})).collect::<Vec<_>>(),
    });
    let path = a.out.join("weights.json");
    unravel::io::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    // One spectrum per matrix kind (the name without its layer number), normalised by σ_max.
    let mut kinds: std::collections::BTreeMap<String, Vec<(String, Vec<f64>)>> = Default::default();
    for (n, _, sv, _) in &rows {
        let kind: String = n
            .split('.')
            .filter(|p| p.parse::<u64>().is_err())
            .collect::<Vec<_>>()
            .join(".");
        let top = sv.first().copied().unwrap_or(1.0).max(1e-30);
        kinds
            .entry(kind)
            .or_default()
            .push((n.clone(), sv.iter().map(|s| s / top).collect()));
    }
    for (kind, series) in &kinds {
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
        rows.len(),
        files.id,
        100.0 * a.rank_threshold
    );
    println!(
        "  {:<44} {:>12} {:>9} {:>6}",
        "matrix", "shape", "eff.rank", "ratio"
    );
    for (n, s, _, rank) in &rows {
        println!(
            "  {n:<44} {:>12} {rank:>9} {:>6.3}",
            format!("{}x{}", s[0], s[1]),
            *rank as f64 / s[0].min(s[1]) as f64
        );
    }
    println!("wrote {}/weights.json and plots", a.out.display());
    Ok(())
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
    let hooks = select_hooks(&ds, a.hooks.as_deref())?;
    if let Some(c) = &a.color_by {
        if !ds.manifest().label_columns.contains(c) {
            bail!(
                "--color-by {c}: not a label column of the dataset (it has: {})",
                if ds.manifest().label_columns.is_empty() {
                    "none".into()
                } else {
                    ds.manifest().label_columns.join(", ")
                }
            );
        }
    }
    let mut colors: Vec<String> = vec![];
    let mut accs: Vec<CovarianceAcc> = hooks
        .iter()
        .map(|h| CovarianceAcc::new(h.d, a.epsilon, a.pca_points))
        .collect();
    ds.check_shards(&(0..ds.shard_count()).collect::<Vec<_>>())?;
    let groups: usize = (0..ds.shard_count())
        .map(|s| ds.shard_reader(s).map(|r| r.row_groups().len()))
        .sum::<Result<usize, _>>()?;
    let bar = crate::cli::progress::progress_bar(
        "{spinner} analyze [{bar:30}] {pos}/{len} row groups  {msg}  {elapsed} ETA {eta}",
    );
    bar.set_length(groups as u64);
    let t0 = std::time::Instant::now();
    let mut tokens = 0u64;
    'shards: for s in 0..ds.shard_count() {
        let reader = ds.shard_reader(s)?;
        for g in 0..reader.row_groups().len() {
            // Hooks are read row-aligned, so a row dropped for NaN/Inf in one hook is dropped
            // in all, and from the colour labels too.
            let (reads, dropped) = reader.read_hooks_aligned(&hooks, g)?;
            if let Some(col) = a
                .color_by
                .as_deref()
                .filter(|_| colors.len() < a.pca_points)
            {
                // The label of each non-special row, aligned with the PCA sample.
                let mut labels = vec![];
                for batch in reader.read_columns(g, &["special", col])? {
                    let sp = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow_array::BooleanArray>();
                    let lab = batch
                        .column(1)
                        .as_any()
                        .downcast_ref::<arrow_array::StringArray>();
                    let (Some(sp), Some(lab)) = (sp, lab) else {
                        bail!(
                            "{}: unexpected column types for special / {col}",
                            reader.path().display()
                        )
                    };
                    for i in (0..sp.len()).filter(|&i| !sp.value(i)) {
                        labels.push(if lab.is_null(i) {
                            "(none)".into()
                        } else {
                            lab.value(i).to_string()
                        });
                    }
                }
                let mut keep = vec![true; labels.len()];
                dropped.iter().for_each(|&r| keep[r] = false);
                colors.extend(
                    labels
                        .into_iter()
                        .zip(keep)
                        .filter_map(|(l, k)| k.then_some(l)),
                );
                colors.truncate(a.pca_points);
            }
            let mut rows = 0;
            for ((hook, acc), r) in hooks.iter().zip(accs.iter_mut()).zip(&reads) {
                let keep = match a.max_tokens {
                    Some(max) => r.rows.min((max - tokens) as usize),
                    None => r.rows,
                };
                acc.add(&r.values[..keep * hook.d]);
                rows = keep;
            }
            tokens += rows as u64;
            bar.inc(1);
            bar.set_message(format!(
                "{tokens} tokens, {:.0} tok/s",
                tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9)
            ));
            if a.max_tokens.is_some_and(|m| tokens >= m) {
                break 'shards;
            }
        }
    }
    bar.finish_and_clear();
    if tokens == 0 {
        bail!("--acts {}: no token rows to analyze", acts.display());
    }
    let metrics: Vec<HookMetrics> = accs
        .into_iter()
        .map(|acc| acc.finish(a.rank_threshold, a.heatmap_dims))
        .collect();

    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let names: Vec<String> = hooks.iter().map(|h| h.name.clone()).collect();
    let json = serde_json::json!({
        "dataset": acts.display().to_string(),
        "model": ds.manifest().model.id,
        "tokens": tokens,
        "hooks": names.iter().zip(&metrics).map(|(n, m)| serde_json::json!({"hook": n, "metrics": m})).collect::<Vec<_>>(),
    });
    let path = a.out.join("analysis.json");
    unravel::io::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    let plot = |r: Result<(), String>| {
        r.map_err(|e| anyhow!("writing plots into {}: {e}", a.out.display()))
    };
    for (name, m) in names.iter().zip(&metrics) {
        let file = name.replace(['/', '*'], "_");
        plot(plots::spectrum(
            &a.out.join(format!("spectrum-{file}.svg")),
            &[(name.clone(), m.eigenvalues.clone())],
            &format!("{name}: covariance spectrum"),
            "eigenvalue (log10)",
        ))?;
        plot(plots::scatter(
            &a.out.join(format!("pca-{file}.svg")),
            &m.pca_2d,
            a.color_by
                .as_ref()
                .map(|_| &colors[..colors.len().min(m.pca_2d.len())]),
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
        plot(plots::per_layer(
            &a.out.join("layers.svg"),
            &names
                .iter()
                .map(|n| n.replace(".hook_", "."))
                .collect::<Vec<_>>(),
            &[
                (
                    "effective rank / d",
                    metrics.iter().map(|m| m.rank_ratio).collect(),
                ),
                (
                    "participation ratio / d",
                    metrics
                        .iter()
                        .map(|m| m.effective_dimensionality / m.d as f64)
                        .collect(),
                ),
            ],
            "Effective rank and dimensionality per hook",
        ))?;
        plot(plots::spectrum(
            &a.out.join("spectra.svg"),
            &names
                .iter()
                .cloned()
                .zip(metrics.iter().map(|m| m.eigenvalues.clone()))
                .collect::<Vec<_>>(),
            "Covariance spectra",
            "eigenvalue (log10)",
        ))?;
    }
    println!(
        "{tokens} tokens of {} ({:.1}s); effective rank at {:.0}% of the variance:",
        acts.display(),
        t0.elapsed().as_secs_f64(),
        100.0 * a.rank_threshold
    );
    println!(
        "  {:<32} {:>6} {:>9} {:>6} {:>11} {:>9} {:>12}",
        "hook", "units", "eff.rank", "ratio", "eff.dim(PR)", "sparsity", "interference"
    );
    for (name, m) in names.iter().zip(&metrics) {
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
    Ok(())
}
