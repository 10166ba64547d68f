//! `eval.json`: what `unravel eval` writes (and, as a bare [`EvalRecord`], what `unravel train`
//! writes into its run folder at the end).
//!
//! The fields are declared in sorted order: the file was first written through a
//! `serde_json::Value`, and this type keeps its bytes.

use serde::{Deserialize, Serialize};

use super::downstream::DownstreamReport;
use super::train::record::EvalRecord;

/// File name of an evaluation: `RUN/eval.json` after training, `--json` of `unravel eval`.
pub const EVAL_FILE: &str = "eval.json";
/// Where `unravel eval` writes its report inside the SAE folder when `--json` is not given.
pub const EVAL_REPORT_FILE: &str = "eval-report.json";

/// `unravel eval`'s report: the evaluation over the chosen shards, where it came from, and the
/// CE/KL numbers when the SAE was spliced into a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The dataset folder, as given.
    pub acts: String,
    pub dead_frac: f64,
    pub dense_frac: f64,
    /// With `--model`: the SAE spliced into the model (absent without).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::sorted_json::sorted"
    )]
    pub downstream: Option<DownstreamReport>,
    pub ev: f64,
    pub fvu: f64,
    pub held_out: bool,
    pub hook: String,
    pub kind: String,
    pub l0: f64,
    pub l1: f64,
    pub log_density_histogram: Vec<(f64, u64)>,
    pub mse: f64,
    /// The SAE, as given (a folder or a hub id).
    pub sae: String,
    /// Tokens evaluated.
    pub tokens: u64,
}

impl EvalReport {
    /// The report of evaluation `rec` of SAE `sae` on `acts` at `hook`.
    pub fn new(
        rec: &EvalRecord,
        sae: &str,
        acts: &str,
        hook: &str,
        downstream: Option<DownstreamReport>,
    ) -> EvalReport {
        EvalReport {
            acts: acts.to_string(),
            dead_frac: rec.dead_frac,
            dense_frac: rec.dense_frac,
            downstream,
            ev: rec.ev,
            fvu: rec.fvu,
            held_out: rec.held_out,
            hook: hook.to_string(),
            kind: rec.kind.to_string(),
            l0: rec.l0,
            l1: rec.l1,
            log_density_histogram: rec.log_density_histogram.clone(),
            mse: rec.mse,
            sae: sae.to_string(),
            tokens: rec.tokens,
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

    fn record() -> EvalRecord {
        EvalRecord {
            kind: "eval",
            step: 7,
            tokens_trained: 4096,
            tokens: 512,
            mse: 0.125,
            fvu: 0.25,
            ev: 0.75,
            l0: 6.5,
            l1: 1.0 / 3.0,
            dead_frac: 0.1,
            dense_frac: 0.0,
            log_density_histogram: vec![(-10.0, 3), (-1.5, 29)],
            held_out: true,
        }
    }

    /// How `unravel eval` wrote the file before this type existed.
    fn old_writer(rec: &EvalRecord, d: Option<&DownstreamReport>) -> String {
        let mut value = serde_json::to_value(rec).unwrap();
        if let (Some(o), Some(r)) = (value.as_object_mut(), d) {
            o.insert("downstream".into(), serde_json::to_value(r).unwrap());
        }
        if let Some(o) = value.as_object_mut() {
            o.insert("sae".into(), "runs/sae".into());
            o.insert("acts".into(), "acts/x".into());
            o.insert("hook".into(), "blocks.0.hook_resid_post".into());
            o.remove("step");
            o.remove("tokens_trained");
        }
        serde_json::to_string_pretty(&value).unwrap()
    }

    #[test]
    fn writes_the_same_bytes_as_the_value_it_replaces_and_reads_them_back() {
        let down = DownstreamReport {
            contexts: 8,
            tokens: 504,
            ce_clean: 3.5,
            ce_sae: 3.75,
            ce_zero: 9.0,
            ce_recovered: None,
            kl_sae: 0.25,
            kl_zero: 5.0,
            kl_score: 0.95,
        };
        for d in [None, Some(down)] {
            let rec = record();
            let new = EvalReport::new(
                &rec,
                "runs/sae",
                "acts/x",
                "blocks.0.hook_resid_post",
                d.clone(),
            );
            let text = serde_json::to_string_pretty(&new).unwrap();
            assert_eq!(text, old_writer(&rec, d.as_ref()));
            let back: EvalReport = serde_json::from_str(&text).unwrap();
            assert_eq!(back, new);
        }
    }
}
