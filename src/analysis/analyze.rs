//! `unravel analyze` as a library entry point: the superposition metrics of every chosen hook of
//! a dataset, in one streaming pass over its shards (the metrics are `superposition`'s), and
//! `analysis.json` as a type. Plots are drawn by the caller from the returned metrics.

use std::path::PathBuf;

use arrow_array::Array;

use super::superposition::{CovarianceAcc, HookMetrics};
use crate::store::{Dataset, HookInfo, ShardReader, StoreError};

/// What to analyse and how.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Hook names or globs, comma separated (`None`: every hook of the dataset).
    pub hooks: Option<String>,
    /// Fraction of the variance the effective rank must explain, in (0, 1].
    pub rank_threshold: f64,
    /// |a| below this counts as zero for the sparsity.
    pub epsilon: f32,
    /// Use at most this many tokens (special rows excluded).
    pub max_tokens: Option<u64>,
    /// Label column whose values colour the PCA sample.
    pub color_by: Option<String>,
    /// Rows projected for the PCA scatter.
    pub pca_points: usize,
    /// Dimensions in the correlation block.
    pub heatmap_dims: usize,
}

/// Progress of the pass, row group by row group.
pub trait AnalyzeObserver {
    /// The pass reads at most this many row groups.
    fn started(&mut self, _row_groups: u64) {}
    /// One more row group read; `tokens` so far.
    fn row_group_done(&mut self, _tokens: u64) {}
}

/// Errors of the pass; each names the value, the caller adds the flag it came from.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A hook pattern that is not a glob.
    #[error("{pattern}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("{pattern}: matches no hook of the dataset (it has: {available})")]
    NoHookMatches { pattern: String, available: String },
    #[error("{column}: not a label column of the dataset (it has: {available})")]
    NotALabelColumn { column: String, available: String },
    #[error("{}: unexpected column types for special / {column}", shard.display())]
    ColumnTypes { shard: PathBuf, column: String },
    /// Every row was special, dropped or past the limit.
    #[error("no token rows to analyze")]
    NoRows,
}

/// The metrics of each analysed hook.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Hook names, in dataset order.
    pub hooks: Vec<String>,
    pub metrics: Vec<HookMetrics>,
    /// Token rows analysed.
    pub tokens: u64,
    /// With `color_by`: the label of each PCA sample row (at most `pca_points`).
    pub colors: Option<Vec<String>>,
}

/// The hooks matching the comma-separated patterns, in dataset order.
pub fn select_hooks(ds: &Dataset, patterns: Option<&str>) -> Result<Vec<HookInfo>, AnalyzeError> {
    let all = &ds.manifest().hooks;
    let Some(p) = patterns else {
        return Ok(all.clone());
    };
    let mut out: Vec<HookInfo> = vec![];
    for pat in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let glob = globset::Glob::new(pat)
            .map_err(|e| AnalyzeError::BadPattern {
                pattern: pat.to_string(),
                reason: e.to_string(),
            })?
            .compile_matcher();
        let hits: Vec<_> = all.iter().filter(|h| glob.is_match(&h.name)).collect();
        if hits.is_empty() {
            return Err(AnalyzeError::NoHookMatches {
                pattern: pat.to_string(),
                available: join(all.iter().map(|h| h.name.as_str())),
            });
        }
        for h in hits {
            if !out.iter().any(|o| o.name == h.name) {
                out.push(h.clone());
            }
        }
    }
    Ok(out)
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// Reads the dataset once and measures every chosen hook.
pub fn analyze(
    ds: &Dataset,
    opts: &AnalyzeOptions,
    observer: &mut dyn AnalyzeObserver,
) -> Result<Analysis, AnalyzeError> {
    let hooks = select_hooks(ds, opts.hooks.as_deref())?;
    if let Some(c) = &opts.color_by {
        let labels = &ds.manifest().label_columns;
        if !labels.contains(c) {
            return Err(AnalyzeError::NotALabelColumn {
                column: c.clone(),
                available: if labels.is_empty() {
                    "none".into()
                } else {
                    labels.join(", ")
                },
            });
        }
    }
    let mut colors: Vec<String> = vec![];
    let mut accs: Vec<CovarianceAcc> = hooks
        .iter()
        .map(|h| CovarianceAcc::new(h.d, opts.epsilon, opts.pca_points))
        .collect();
    ds.check_shards(&(0..ds.shard_count()).collect::<Vec<_>>())?;
    let groups: usize = (0..ds.shard_count())
        .map(|s| ds.shard_reader(s).map(|r| r.row_groups().len()))
        .sum::<Result<usize, _>>()?;
    observer.started(groups as u64);
    let mut tokens = 0u64;
    'shards: for s in 0..ds.shard_count() {
        let reader = ds.shard_reader(s)?;
        for g in 0..reader.row_groups().len() {
            // Hooks are read row-aligned, so a row dropped for NaN/Inf in one hook is dropped
            // in all, and from the colour labels too.
            let (reads, dropped) = reader.read_hooks_aligned(&hooks, g)?;
            if let Some(col) = opts
                .color_by
                .as_deref()
                .filter(|_| colors.len() < opts.pca_points)
            {
                let labels = row_labels(&reader, g, col)?;
                let mut keep = vec![true; labels.len()];
                dropped.iter().for_each(|&r| keep[r] = false);
                colors.extend(
                    labels
                        .into_iter()
                        .zip(keep)
                        .filter_map(|(l, k)| k.then_some(l)),
                );
                colors.truncate(opts.pca_points);
            }
            let mut rows = 0;
            for ((hook, acc), r) in hooks.iter().zip(accs.iter_mut()).zip(&reads) {
                let keep = match opts.max_tokens {
                    Some(max) => r.rows.min((max - tokens) as usize),
                    None => r.rows,
                };
                acc.add(&r.values[..keep * hook.d]);
                rows = keep;
            }
            tokens += rows as u64;
            observer.row_group_done(tokens);
            if opts.max_tokens.is_some_and(|m| tokens >= m) {
                break 'shards;
            }
        }
    }
    if tokens == 0 {
        return Err(AnalyzeError::NoRows);
    }
    let metrics = accs
        .into_iter()
        .map(|acc| acc.finish(opts.rank_threshold, opts.heatmap_dims))
        .collect();
    Ok(Analysis {
        hooks: hooks.into_iter().map(|h| h.name).collect(),
        metrics,
        tokens,
        colors: opts.color_by.as_ref().map(|_| colors),
    })
}

/// The label in `column` of each non-special row of a row group (`(none)` where it is null),
/// aligned with the rows the hooks return.
fn row_labels(
    reader: &ShardReader,
    row_group: usize,
    column: &str,
) -> Result<Vec<String>, AnalyzeError> {
    let mut labels = vec![];
    for batch in reader.read_columns(row_group, &["special", column])? {
        let sp = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::BooleanArray>();
        let lab = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>();
        let (Some(sp), Some(lab)) = (sp, lab) else {
            return Err(AnalyzeError::ColumnTypes {
                shard: reader.path().to_path_buf(),
                column: column.to_string(),
            });
        };
        for i in (0..sp.len()).filter(|&i| !sp.value(i)) {
            labels.push(if lab.is_null(i) {
                "(none)".into()
            } else {
                lab.value(i).to_string()
            });
        }
    }
    Ok(labels)
}
