//! One evaluation's numbers, as logged to metrics.jsonl and written to eval.json.

use serde::{Deserialize, Serialize};

/// An evaluation over a fixed set of tokens (written to
/// [`EVAL_FILE`](crate::sae::eval_report::EVAL_FILE) at the end of training).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Not read back (a `&'static str`): empty in a record read from a file.
    #[serde(skip_deserializing)]
    pub kind: &'static str,
    pub step: u64,
    pub tokens_trained: u64,
    /// Tokens evaluated.
    pub tokens: u64,
    /// Mean over tokens of ‖x − x̂‖² in the raw (unscaled) activation space.
    pub mse: f64,
    pub fvu: f64,
    pub ev: f64,
    pub l0: f64,
    /// Mean L1 term (training space, as in the loss).
    pub l1: f64,
    /// Features that never fired on the evaluated tokens.
    pub dead_frac: f64,
    pub dense_frac: f64,
    /// log10(density + 1e-10) histogram: (lower edge, features), 0.5-wide bins.
    pub log_density_histogram: Vec<(f64, u64)>,
    pub held_out: bool,
}
