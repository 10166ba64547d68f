//! What the run tells its caller: progress events ([`TrainObserver`]; the library never prints,
//! the CLI draws a progress bar) and the outcome of a finished run ([`TrainSummary`]).

use std::path::{Path, PathBuf};

use super::log::LogRecord;
use super::record::EvalRecord;

/// Receives progress; every method has a do-nothing default.
pub trait TrainObserver {
    fn started(&mut self, _total_steps: u64, _done_steps: u64, _batch: usize, _engine: &str) {}
    fn stepped(&mut self, _step: u64, _loss: f64, _l0: f64, _dead_frac: f64) {}
    fn logged(&mut self, _r: &LogRecord) {}
    fn evaluated(&mut self, _r: &EvalRecord) {}
    fn checkpointed(&mut self, _dir: &Path) {}
    fn note(&mut self, _msg: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl TrainObserver for Silent {}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub dir: PathBuf,
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub final_eval: EvalRecord,
    pub engine: String,
    /// Dead features resampled (unit-norm recipe).
    pub resampled: u64,
    /// Rows dropped for NaN/Inf values (--skip-nonfinite).
    pub skipped_rows: u64,
}
