//! `unravel verify --audit` as a library entry point: an audit of a planted-neurons dataset
//! (its `audit.json`) scored against the planted truth (`neurons::score_neurons`).

use std::path::{Path, PathBuf};

use super::checks::Check;
use super::neurons::{score_neurons, NeuronScore, NeuronTruth};
use crate::analysis::report::AuditReport;

/// The audit's file inside an audit folder.
use crate::analysis::report::AUDIT_FILE;

/// Errors naming the audit file; the caller adds the flag that named its folder.
#[derive(Debug, thiserror::Error)]
pub enum AuditVerifyError {
    #[error("{}: run `unravel audit` first: {reason}", path.display())]
    Missing { path: PathBuf, reason: String },
    #[error("{}: not an audit.json: {reason}", path.display())]
    NotAnAudit { path: PathBuf, reason: String },
    #[error("{}: audits no neurons", path.display())]
    NoNeurons { path: PathBuf },
    /// The audit does not fit the truth (another hook, another dataset).
    #[error("{0}")]
    Mismatch(String),
}

/// Thresholds; each one given adds a check.
#[derive(Debug, Clone, Default)]
pub struct AuditThresholds {
    pub min_precision: Option<f64>,
    pub min_recall: Option<f64>,
    pub min_concept_f1: Option<f64>,
}

/// Reads `audit_dir/audit.json`.
pub fn read_audit(audit_dir: &Path) -> Result<AuditReport, AuditVerifyError> {
    let path = audit_dir.join(AUDIT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| AuditVerifyError::Missing {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| AuditVerifyError::NotAnAudit {
        path,
        reason: e.to_string(),
    })
}

/// Scores the audit's neurons (from `audit_dir`, for messages) against the planted truth.
pub fn verify_audit(
    truth: &NeuronTruth,
    report: &AuditReport,
    audit_dir: &Path,
) -> Result<NeuronScore, AuditVerifyError> {
    let side = report
        .sides
        .iter()
        .find(|s| s.kind == "neurons")
        .ok_or_else(|| AuditVerifyError::NoNeurons {
            path: audit_dir.join(AUDIT_FILE),
        })?;
    let found: Vec<(String, Vec<String>)> = side
        .unit_results
        .iter()
        .map(|u| {
            (
                u.class.clone(),
                u.concepts.iter().map(|c| c.concept.clone()).collect(),
            )
        })
        .collect();
    score_neurons(truth, &found).map_err(|e| AuditVerifyError::Mismatch(e.to_string()))
}

/// The checks the thresholds ask for, in the order the table shows them.
pub fn audit_checks(s: &NeuronScore, t: &AuditThresholds) -> Vec<Check> {
    [
        t.min_precision
            .map(|m| Check::at_least("precision", s.polysemantic.precision, m)),
        t.min_recall
            .map(|m| Check::at_least("recall", s.polysemantic.recall, m)),
        t.min_concept_f1
            .map(|m| Check::at_least("concept F1", s.concepts.f1, m)),
    ]
    .into_iter()
    .flatten()
    .collect()
}
