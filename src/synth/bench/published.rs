//! SynthSAEBench-16k's published results (Chanin & Garriga-Alonso 2026, arXiv 2602.14687):
//! SAELens SAEs of width 4096 trained on 200M samples (batch 1024, lr 3e-4), scored by
//! `eval_sae_on_synthetic_data`. `unravel verify --synth synth-sae-bench-16k` prints them beside
//! its own scores, as issue 24 quotes them.

/// One published SAE's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishedRow {
    pub sae: &'static str,
    pub l0: f64,
    pub f1: f64,
    pub mcc: f64,
    pub uniqueness: f64,
    pub explained_variance: f64,
}

const fn row(sae: &'static str, l0: f64, f1: f64, mcc: f64, uniq: f64, ev: f64) -> PublishedRow {
    PublishedRow {
        sae,
        l0,
        f1,
        mcc,
        uniqueness: uniq,
        explained_variance: ev,
    }
}

/// The published rows, Standard L1 first.
pub const PUBLISHED_16K: [PublishedRow; 4] = [
    row("Standard L1", 25.0, 0.556, 0.604, 0.898, 0.765),
    row("Standard L1", 20.0, 0.578, 0.583, 0.853, 0.750),
    row("BatchTopK", 25.0, 0.732, 0.757, 0.984, 0.792),
    row("Matryoshka", 25.0, 0.879, 0.793, 0.999, 0.779),
];
