//! [`AuditError`]: settings the audit refuses before it reads a shard. The messages name the flag
//! as well as the value: the audit's options are its command's flags, one for one.

/// A refused audit setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuditError {
    /// A score name other than selectivity, auroc, topk or iou.
    #[error("--score {0}: expected selectivity, auroc, topk or iou")]
    Score(String),
    /// Neither neurons nor SAE features to audit.
    #[error("nothing to audit: give --hook (neurons) and/or --sae (features)")]
    NothingToAudit,
    /// The unit sources read different hooks.
    #[error("--hook and the SAE's hook differ; audit one hook at a time")]
    HooksDiffer { first: String, other: String },
    /// A score threshold outside [0, 1].
    #[error("--threshold {0}: must be in [0, 1]")]
    Threshold(f64),
    /// An AUROC floor outside [0, 1].
    #[error("--min-auroc {0}: must be in [0, 1] (0.5 is chance)")]
    MinAuroc(f64),
    /// A top-k significance level outside [0, 1).
    #[error("--topk-alpha {0}: must be in [0, 1) (0 turns the test off)")]
    TopkAlpha(f64),
    /// A negative or non-finite top-k lift.
    #[error("--min-topk-lift {0}: must be a number >= 0 (1 = the concept's base rate)")]
    MinTopkLift(f64),
}
