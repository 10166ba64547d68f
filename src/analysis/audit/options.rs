//! The audit's settings: which score the threshold applies to, and every threshold and size.

use super::error::AuditError;
use crate::analysis::report::Scores;

/// Which score the threshold applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    Selectivity,
    /// 2·AUROC − 1, clipped below at 0, so that the same threshold scale applies.
    Auroc,
    Topk,
    Iou,
}

impl ScoreKind {
    pub fn parse(s: &str) -> Result<ScoreKind, AuditError> {
        match s {
            "selectivity" => Ok(ScoreKind::Selectivity),
            "auroc" => Ok(ScoreKind::Auroc),
            "topk" => Ok(ScoreKind::Topk),
            "iou" => Ok(ScoreKind::Iou),
            _ => Err(AuditError::Score(s.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Selectivity => "selectivity",
            ScoreKind::Auroc => "auroc",
            ScoreKind::Topk => "topk",
            ScoreKind::Iou => "iou",
        }
    }

    pub fn of(self, s: &Scores) -> f64 {
        match self {
            ScoreKind::Selectivity => s.selectivity,
            ScoreKind::Auroc => (2.0 * s.auroc - 1.0).max(0.0),
            ScoreKind::Topk => s.topk,
            ScoreKind::Iou => s.iou,
        }
    }
}

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub score: ScoreKind,
    pub threshold: f64,
    pub min_support: u64,
    pub min_z: f64,
    /// Rank agreement: a passing concept's AUROC is at least this (0: no AUROC test).
    pub min_auroc: f64,
    /// ... and its top-k share is not below its base rate at this significance: P(Bin(k, base
    /// rate) ≤ hits) ≥ topk_alpha (0: no such test).
    pub topk_alpha: f64,
    /// ... and, when > 0, its top-k share is above 0 and at least this × its base rate.
    pub min_topk_lift: f64,
    pub top_k: usize,
    pub related_overlap: f64,
    /// Rows sampled (from evenly spaced row groups) to place the histogram bins.
    pub sample_rows: usize,
    /// Cards per side in the report.
    pub cards: usize,
    /// Examples per card.
    pub examples: usize,
    /// Tokens shown on each side of an example's top token.
    pub window: usize,
    /// Stop after this many scored tokens (None: all).
    pub max_tokens: Option<u64>,
    /// False-positive control: shuffle the concept sets across the scored tokens of each block
    /// with this seed (base rates kept, any link to the units broken; expect ≈ 0 polysemantic).
    pub shuffle_labels: Option<u64>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            score: ScoreKind::Selectivity,
            threshold: 0.3,
            min_support: 10,
            min_z: 5.0,
            min_auroc: 0.55,
            topk_alpha: 0.01,
            min_topk_lift: 0.0,
            top_k: 50,
            related_overlap: 0.5,
            sample_rows: 32_768,
            cards: 32,
            examples: 5,
            window: 12,
            max_tokens: None,
            shuffle_labels: None,
        }
    }
}
