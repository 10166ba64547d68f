//! The audit's result, as written to `audit.json` (and read back by the HTML report).
//! Plain data: every number a reader needs is here; the full units × concepts score table
//! goes to `scores.csv` beside it.

use serde::{Deserialize, Serialize};

/// Version of the `audit.json` layout (2: the rank tests `min_auroc`, `topk_alpha`,
/// `min_topk_lift` and every
/// unit's `rejected` concepts with the tests they failed).
pub const AUDIT_VERSION: u32 = 2;

/// File names in an audit folder: the [`AuditReport`], the units × concepts table, the HTML
/// report and its class-rate plot.
pub const AUDIT_FILE: &str = "audit.json";
pub const SCORES_FILE: &str = "scores.csv";
pub const REPORT_FILE: &str = "report.html";
pub const RATES_PLOT_FILE: &str = "rates.svg";

/// Everything one `unravel audit` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    pub version: u32,
    /// Dataset folder audited.
    pub dataset: String,
    /// Model the activations came from (manifest `model.id`).
    pub model: String,
    /// Token rows scored (special rows excluded).
    pub tokens: u64,
    /// Which score the threshold applies to: `selectivity`, `auroc` (as 2·AUROC − 1), `topk`, `iou`.
    pub score: String,
    pub threshold: f64,
    /// A concept passes only when the unit fires (> 0) on at least this many of its tokens.
    pub min_support: u64,
    /// ... and its mean activation on the concept beats the rest by at least this many standard
    /// errors (`Scores::z`).
    pub min_z: f64,
    /// ... and the unit's ranks agree: AUROC at least this (a random concept token out-ranks a
    /// random other token clearly more often than chance) ...
    #[serde(default)]
    pub min_auroc: f64,
    /// ... and the unit's top-k activations do not avoid the concept: the probability that k
    /// random tokens hold at most as many of its tokens (Binomial(k, base rate)) is at least this
    /// (0: no such test) ...
    #[serde(default)]
    pub topk_alpha: f64,
    /// ... and, when > 0, the share of the unit's top-k activations that carry the concept is
    /// above 0 and at least this multiple of the concept's base rate (what k random tokens give
    /// on average).
    #[serde(default)]
    pub min_topk_lift: f64,
    /// How many top activations per unit the `topk` share is taken over.
    pub top_k: usize,
    /// A passing concept A lies inside a larger passing concept B when |A∩B| / |A| is at least
    /// this; it is then subsumed by B and does not count towards polysemanticity.
    pub related_overlap: f64,
    pub concepts: Vec<ConceptInfo>,
    /// One per kind of unit audited: `neurons` (a hook's dimensions) and/or `features` (an SAE).
    pub sides: Vec<SideReport>,
}

/// One concept: where it came from and how common it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConceptInfo {
    pub name: String,
    /// `tagger`, `lexicon`, `regex` or `label`.
    pub source: String,
    /// Scored tokens carrying the concept.
    pub tokens: u64,
    /// tokens / all scored tokens.
    pub base_rate: f64,
}

/// The audit of one set of units.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideReport {
    /// `neurons` or `features`.
    pub kind: String,
    /// Hook name (neurons) or SAE folder (features).
    pub source: String,
    /// Hook the units read.
    pub hook: String,
    pub units: usize,
    pub summary: Summary,
    /// Histogram of the number of passing concepts per alive unit: `passing_histogram[k]` units
    /// pass exactly k concepts (the last bin holds k or more).
    pub passing_histogram: Vec<u64>,
    /// log10(density) of every unit (density = fraction of tokens where it is > 0; dead units
    /// are −10).
    pub log10_density: Vec<f32>,
    /// Every unit, in unit order.
    pub unit_results: Vec<UnitResult>,
    /// The units shown as cards in the report (polysemantic first, then by best score), with
    /// their top-activating contexts.
    pub cards: Vec<Card>,
}

/// Counts of each class.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub polysemantic: usize,
    pub monosemantic: usize,
    pub unexplained: usize,
    pub dead: usize,
    /// polysemantic / (units − dead); 0 when every unit is dead.
    pub polysemantic_rate: f64,
    /// monosemantic / (units − dead).
    pub monosemantic_rate: f64,
}

/// A unit's class and the concepts that passed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitResult {
    pub unit: usize,
    /// `polysemantic`, `monosemantic`, `unexplained` or `dead`.
    pub class: String,
    pub density: f64,
    pub max_activation: f32,
    /// Passing concepts, best score first.
    pub concepts: Vec<PassingConcept>,
    /// Concepts whose score reached the threshold but which failed another test, best score
    /// first: the decision's reason for each.
    #[serde(default)]
    pub rejected: Vec<RejectedConcept>,
}

/// A concept whose score reached the threshold for a unit but did not pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedConcept {
    pub concept: String,
    pub scores: Scores,
    /// The tests it failed, in this order: `support`, `z`, `auroc`, `topk` (see
    /// `AuditReport`), `explained_away` (the explain-away pass).
    pub failed: Vec<String>,
}

/// A concept that passed the threshold for a unit, with all four scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassingConcept {
    pub concept: String,
    pub scores: Scores,
}

/// The four scores of one unit × concept pair (definitions in docs/metrics.md,
/// "Polysemanticity audit").
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    /// (μ⁺_on − μ⁺_off) / (μ⁺_on + μ⁺_off), clipped below at 0; μ⁺ = mean of max(a, 0).
    pub selectivity: f64,
    /// Probability that a random concept token out-activates a random other token.
    pub auroc: f64,
    /// Share of the unit's top-k activating tokens that carry the concept.
    pub topk: f64,
    /// Network-Dissection IoU of {a ≥ T} (T = top-0.5% quantile; a > 0 when it is 0) with the concept.
    pub iou: f64,
    /// Concept tokens on which the unit is > 0.
    pub support: u64,
    /// (μ⁺_on − μ⁺_off) / (σ⁺ · √(1/n_on + 1/n_off)): how many standard errors the difference
    /// of means is (σ⁺ = standard deviation of max(a, 0) over all tokens).
    pub z: f64,
}

/// One unit shown in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub unit: usize,
    pub class: String,
    /// Score (the audited one) of every concept, in `AuditReport::concepts` order: one heatmap row.
    pub concept_scores: Vec<f64>,
    /// Top-activating contexts, highest first.
    pub examples: Vec<Example>,
}

/// A window of a context around one of the unit's top activations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub activation: f32,
    pub context_id: u64,
    /// Token texts of the window.
    pub tokens: Vec<String>,
    /// The unit's activation on each token of the window.
    pub activations: Vec<f32>,
    /// Index in `tokens` of the top-activating token.
    pub focus: usize,
    /// Concepts carried by the focus token.
    pub focus_concepts: Vec<String>,
}
