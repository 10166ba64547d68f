//! `analysis.json`: what `unravel analyze` writes, the superposition metrics of every hook.
//!
//! Fields are declared in sorted order and [`HookMetrics`] is written through a
//! `serde_json::Value` (keys sorted): the file was first built as a `serde_json::Value`, and
//! this type keeps its bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::analyze::Analysis;
use super::superposition::HookMetrics;
use crate::store::Dataset;

/// File names in an analysis folder: the report, and the plots over all hooks (written when
/// there are two or more).
pub const ANALYSIS_FILE: &str = "analysis.json";
pub const LAYERS_PLOT_FILE: &str = "layers.svg";
pub const SPECTRA_PLOT_FILE: &str = "spectra.svg";

/// The covariance spectrum plot of one hook.
pub fn spectrum_plot_file(hook: &str) -> String {
    format!("spectrum-{}.svg", hook.replace(['/', '*'], "_"))
}

/// Everything one `unravel analyze` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisReport {
    /// The dataset folder, as given.
    pub dataset: String,
    pub hooks: Vec<HookReport>,
    /// The model the activations came from (manifest `model.id`).
    pub model: String,
    /// Token rows analysed.
    pub tokens: u64,
}

/// One hook's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookReport {
    pub hook: String,
    #[serde(serialize_with = "crate::sorted_json::sorted")]
    pub metrics: HookMetrics,
}

impl AnalysisReport {
    /// The report of `analysis` of the dataset in `dataset` (as the user named it).
    pub fn new(analysis: &Analysis, dataset: &Path, ds: &Dataset) -> AnalysisReport {
        AnalysisReport {
            dataset: dataset.display().to_string(),
            hooks: analysis
                .hooks
                .iter()
                .zip(&analysis.metrics)
                .map(|(hook, m)| HookReport {
                    hook: hook.clone(),
                    metrics: m.clone(),
                })
                .collect(),
            model: ds.manifest().model.id.clone(),
            tokens: analysis.tokens,
        }
    }

    /// The file's text: every object's keys sorted, as the file has always been.
    pub fn to_json(&self) -> String {
        crate::sorted_json::pretty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_same_bytes_as_the_value_it_replaces_and_reads_them_back() {
        let m = HookMetrics {
            d: 2,
            tokens: 10,
            effective_dimensionality: 1.5,
            effective_rank: 2,
            rank_threshold: 0.9,
            rank_ratio: 1.0,
            sparsity: 0.25,
            epsilon: 0.1,
            interference: 0.125,
            eigenvalues: vec![2.0, 0.5],
            correlation_block: vec![vec![1.0, 0.3], vec![0.3, 1.0]],
            pca_2d: vec![[0.1, -0.2]],
        };
        let names = ["blocks.0.hook_resid_post".to_string()];
        // How `unravel analyze` wrote the file before this type existed.
        let old = serde_json::json!({
            "dataset": "acts/x",
            "model": "gpt2",
            "tokens": 10,
            "hooks": names.iter().zip([&m]).map(|(n, m)| serde_json::json!({"hook": n, "metrics": m})).collect::<Vec<_>>(),
        });
        let new = AnalysisReport {
            dataset: "acts/x".into(),
            hooks: vec![HookReport {
                hook: names[0].clone(),
                metrics: m,
            }],
            model: "gpt2".into(),
            tokens: 10,
        };
        let text = serde_json::to_string_pretty(&new).unwrap();
        assert_eq!(text, serde_json::to_string_pretty(&old).unwrap());
        let back: AnalysisReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.hooks[0].metrics.eigenvalues, [2.0, 0.5]);
        assert_eq!(back.tokens, 10);
    }
}
