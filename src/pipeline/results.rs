//! A stage's key numbers in the run summary (`summary.json`'s `results`, the index page, the
//! lines `unravel run` prints), taken from the typed file the stage wrote.
//!
//! Every struct declares its fields in sorted order: `summary.json` was first written from
//! `serde_json::Value`s, and these types keep its bytes. A number the stage's file lacks (the
//! file is missing or unreadable) is `None`, written as `null`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::analysis_report::AnalysisReport;
use crate::analysis::report::AuditReport;
use crate::sae::eval_report::EvalReport;
use crate::sae::saelens_cfg::SaeLensCfg;
use crate::sae::train::EvalRecord;
use crate::store::Manifest;
use crate::synth::neurons::{NeuronScore, NeuronTruth};
use crate::synth::verify::RecoveryReport;

/// One stage's numbers; written as the inner object (or `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StageResults {
    /// extract, synth, plant (None: no manifest).
    Dataset(Option<DatasetNumbers>),
    Train(TrainNumbers),
    Eval(EvalNumbers),
    Audit(AuditNumbers),
    /// verify of an SAE against planted features.
    VerifySae(VerifySaeNumbers),
    /// verify of an audit against planted neurons.
    VerifyAudit(VerifyAuditNumbers),
    Analyze(AnalyzeNumbers),
}

/// A dataset's manifest, summarised (and a planted-neuron dataset's truth).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetNumbers {
    /// Planted neurons: how many concepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concepts: Option<usize>,
    pub contexts: u64,
    pub hooks: Vec<HookDim>,
    pub label_columns: Vec<String>,
    pub model: String,
    /// Planted neurons: how many of each class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted_neurons: Option<BTreeMap<String, u64>>,
    pub shards: usize,
    pub size_mb: f64,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookDim {
    pub d: usize,
    pub name: String,
}

/// The SAE a train stage exported and its final (held-out) evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrainNumbers {
    pub d_in: Option<usize>,
    pub d_sae: Option<usize>,
    pub dead_frac: Option<f64>,
    pub dense_frac: Option<f64>,
    pub ev: Option<f64>,
    pub fvu: Option<f64>,
    pub held_out: Option<bool>,
    pub hook: Option<String>,
    pub l0: Option<f64>,
    pub mse: Option<f64>,
    pub tokens_trained: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvalNumbers {
    pub ce_recovered: Option<f64>,
    pub dead_frac: Option<f64>,
    pub dense_frac: Option<f64>,
    pub ev: Option<f64>,
    pub fvu: Option<f64>,
    pub hook: Option<String>,
    pub kl_score: Option<f64>,
    pub l0: Option<f64>,
    pub tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditNumbers {
    pub concepts: Option<usize>,
    pub score: Option<String>,
    pub sides: Vec<SideNumbers>,
    pub threshold: Option<f64>,
    pub tokens: Option<u64>,
}

/// One audited set of units (neurons of a hook, or an SAE's features).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideNumbers {
    pub dead: usize,
    pub hook: String,
    /// `neurons` or `features`.
    pub kind: String,
    pub monosemantic: usize,
    pub polysemantic: usize,
    pub polysemantic_rate: f64,
    pub source: String,
    pub unexplained: usize,
    pub units: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifySaeNumbers {
    pub dead_frac: Option<f64>,
    pub duplicated_pairs: Option<usize>,
    /// On samples with true codes (SAELens's definitions), when verify measured them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_variance: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l0: Option<f64>,
    pub latents: Option<usize>,
    pub mcc: Option<f64>,
    pub mmcs: Option<f64>,
    /// Always `sae` (tells the two kinds of verify apart in `summary.json`).
    pub of: &'static str,
    pub planted: Option<usize>,
    pub recovered: Option<f64>,
    pub threshold: Option<f64>,
    pub uniqueness: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyAuditNumbers {
    pub class_accuracy: Option<f64>,
    pub concept_f1: Option<f64>,
    pub concept_precision: Option<f64>,
    pub concept_recall: Option<f64>,
    pub f1: Option<f64>,
    /// Always `audit`.
    pub of: &'static str,
    pub planted_polysemantic: Option<usize>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnalyzeNumbers {
    pub hooks: Vec<AnalyzeHook>,
    pub tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyzeHook {
    pub d: usize,
    pub effective_dimensionality: f64,
    pub effective_rank: usize,
    pub hook: String,
    pub interference: f64,
    pub rank_ratio: f64,
    pub sparsity: f64,
}

impl DatasetNumbers {
    pub fn new(m: &Manifest, neurons: Option<&NeuronTruth>) -> DatasetNumbers {
        let planted_neurons = neurons.map(|n| {
            let mut classes = BTreeMap::new();
            for p in &n.neurons {
                *classes.entry(p.class.clone()).or_insert(0) += 1;
            }
            classes
        });
        DatasetNumbers {
            concepts: neurons.map(|n| n.concepts.len()),
            contexts: m.totals.contexts,
            hooks: m
                .hooks
                .iter()
                .map(|h| HookDim {
                    d: h.d,
                    name: h.name.clone(),
                })
                .collect(),
            label_columns: m.label_columns.clone(),
            model: m.model.id.clone(),
            planted_neurons,
            shards: m.shards.len(),
            size_mb: m.shards.iter().map(|s| s.bytes).sum::<u64>() as f64 / 1e6,
            tokens: m.totals.tokens,
        }
    }
}

impl TrainNumbers {
    /// From the run folder's final evaluation and its SAELens config, either possibly missing.
    pub fn new(e: Option<&EvalRecord>, c: Option<&SaeLensCfg>) -> TrainNumbers {
        TrainNumbers {
            d_in: c.map(|c| c.d_in),
            d_sae: c.map(|c| c.d_sae),
            dead_frac: e.map(|e| e.dead_frac),
            dense_frac: e.map(|e| e.dense_frac),
            ev: e.map(|e| e.ev),
            fvu: e.map(|e| e.fvu),
            held_out: e.map(|e| e.held_out),
            hook: c.map(|c| c.metadata.hook_name.clone()),
            l0: e.map(|e| e.l0),
            mse: e.map(|e| e.mse),
            tokens_trained: e.map(|e| e.tokens_trained),
        }
    }
}

impl EvalNumbers {
    pub fn new(e: &EvalReport) -> EvalNumbers {
        let d = e.downstream.as_ref();
        EvalNumbers {
            ce_recovered: d.and_then(|d| d.ce_recovered),
            dead_frac: Some(e.dead_frac),
            dense_frac: Some(e.dense_frac),
            ev: Some(e.ev),
            fvu: Some(e.fvu),
            hook: Some(e.hook.clone()),
            kl_score: d.map(|d| d.kl_score),
            l0: Some(e.l0),
            tokens: Some(e.tokens),
        }
    }
}

impl AuditNumbers {
    pub fn new(a: &AuditReport) -> AuditNumbers {
        AuditNumbers {
            concepts: Some(a.concepts.len()),
            score: Some(a.score.clone()),
            sides: a
                .sides
                .iter()
                .map(|s| SideNumbers {
                    dead: s.summary.dead,
                    hook: s.hook.clone(),
                    kind: s.kind.clone(),
                    monosemantic: s.summary.monosemantic,
                    polysemantic: s.summary.polysemantic,
                    polysemantic_rate: s.summary.polysemantic_rate,
                    source: s.source.clone(),
                    unexplained: s.summary.unexplained,
                    units: s.units,
                })
                .collect(),
            threshold: Some(a.threshold),
            tokens: Some(a.tokens),
        }
    }
}

impl VerifySaeNumbers {
    pub fn new(v: Option<&RecoveryReport>) -> VerifySaeNumbers {
        let samples = v.and_then(|v| v.samples.as_ref());
        VerifySaeNumbers {
            dead_frac: v
                .filter(|v| v.d_sae > 0)
                .map(|v| v.dead_latents as f64 / v.d_sae as f64),
            duplicated_pairs: v.map(|v| v.duplicated_pairs),
            explained_variance: samples.map(|s| s.explained_variance),
            f1: samples.map(|s| s.f1),
            l0: samples.map(|s| s.l0),
            latents: v.map(|v| v.d_sae),
            mcc: v.map(|v| v.mcc),
            mmcs: v.map(|v| v.mmcs),
            of: "sae",
            planted: v.map(|v| v.n_truth),
            recovered: v.map(|v| v.recovered),
            // The f32 as the file spells it (shortest form), not its binary expansion.
            threshold: v.and_then(|v| v.threshold.to_string().parse().ok()),
            uniqueness: v.map(|v| v.uniqueness),
        }
    }
}

impl VerifyAuditNumbers {
    pub fn new(v: Option<&NeuronScore>) -> VerifyAuditNumbers {
        VerifyAuditNumbers {
            class_accuracy: v.map(|v| v.class_accuracy),
            concept_f1: v.map(|v| v.concepts.f1),
            concept_precision: v.map(|v| v.concepts.precision),
            concept_recall: v.map(|v| v.concepts.recall),
            f1: v.map(|v| v.polysemantic.f1),
            of: "audit",
            planted_polysemantic: v.map(|v| v.polysemantic.actual),
            precision: v.map(|v| v.polysemantic.precision),
            recall: v.map(|v| v.polysemantic.recall),
        }
    }
}

impl AnalyzeNumbers {
    pub fn new(a: &AnalysisReport) -> AnalyzeNumbers {
        AnalyzeNumbers {
            hooks: a
                .hooks
                .iter()
                .map(|h| {
                    let m = &h.metrics;
                    AnalyzeHook {
                        d: m.d,
                        effective_dimensionality: m.effective_dimensionality,
                        effective_rank: m.effective_rank,
                        hook: h.hook.clone(),
                        interference: m.interference,
                        rank_ratio: m.rank_ratio,
                        sparsity: m.sparsity,
                    }
                })
                .collect(),
            tokens: Some(a.tokens),
        }
    }
}

impl StageResults {
    /// The results as JSON (what `summary.json` holds for the stage).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
