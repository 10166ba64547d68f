//! The polysemanticity audit: every unit × concept scored in one streaming pass.
//!
//! Units are a hook's dimensions (neurons) or an SAE's features (encoded on the fly from the
//! hook the SAE reads). For unit k with activation a and concept c (definitions in full in
//! docs/metrics.md, "Polysemanticity audit"):
//! - selectivity = (μ⁺_on − μ⁺_off) / (μ⁺_on + μ⁺_off), clipped below at 0, where μ⁺ is the mean
//!   of max(a, 0) over tokens with / without c;
//! - AUROC of a for c, from a histogram of a with quantile bins (ties within a bin count ½);
//! - top-k share: fraction of the unit's k highest activations that carry c;
//! - IoU (Network Dissection): |{a ≥ T} ∩ c| / |{a ≥ T} ∪ c|, T = the unit's top-0.5% quantile
//!   (a > 0 when that quantile is 0);
//! - support: concept tokens on which a > 0.
//!
//! A concept passes when the chosen score ≥ threshold, support ≥ min_support, z ≥ min_z, and the
//! unit's ranks agree with its mean (a mean lifted by a few huge activations on tokens the unit
//! otherwise ranks low fails them): AUROC ≥ min_auroc, and the unit's top-k activations do not
//! avoid the concept — P(Bin(k, base rate) ≤ the top-k tokens carrying it) ≥ topk_alpha — nor,
//! when min_topk_lift > 0, carry it less than min_topk_lift × its base rate (or never); and it
//! survives the explain-away pass (see
//! [`Audit::explain_away`]) when the unit passes several. Every rejection keeps the tests it
//! failed ([`Failed`]), shown in audit.json and scores.csv. A unit is dead
//! when it is never > 0, polysemantic when two passing concepts remain after those lying inside
//! a larger passing concept (|A∩B| / |A| ≥ `related_overlap`) are subsumed by it, monosemantic
//! when some concept passes, unexplained otherwise.
//!
//! Memory is bounded by units × concepts × bins, whatever the number of tokens: the quantile bin
//! edges come from a sample of row groups read first.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::blocks::{Block, BlockStream, RowAddr};
use super::concepts::Labeler;
use super::report::*;
use crate::sae::Sae;
use crate::store::{Dataset, HookInfo};

/// Histogram bins per unit (quantile edges; at most this many + 1 bins).
const BINS: usize = 32;
/// Rows scored at once (bounds the feature-major buffer: units × ROWS_PER_CHUNK floats).
const ROWS_PER_CHUNK: usize = 1024;
/// Network Dissection's activation quantile for the IoU mask.
const IOU_QUANTILE: f64 = 0.995;

/// The tests a unit × concept pair can fail, as bits (0 = it passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failed(pub u8);

impl Failed {
    pub const SCORE: u8 = 1;
    pub const SUPPORT: u8 = 2;
    pub const Z: u8 = 4;
    pub const AUROC: u8 = 8;
    pub const TOPK: u8 = 16;
    pub const EXPLAINED_AWAY: u8 = 32;
    const NAMES: [(u8, &'static str); 6] = [
        (Failed::SCORE, "score"),
        (Failed::SUPPORT, "support"),
        (Failed::Z, "z"),
        (Failed::AUROC, "auroc"),
        (Failed::TOPK, "topk"),
        (Failed::EXPLAINED_AWAY, "explained_away"),
    ];

    pub fn passes(self) -> bool {
        self.0 == 0
    }

    /// Names of the failed tests, in the order above.
    pub fn names(self) -> Vec<&'static str> {
        Failed::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|&(_, name)| name)
            .collect()
    }

    /// `pass`, or the failed tests joined by `+` (scores.csv's `reason`).
    pub fn reason(self) -> String {
        if self.passes() {
            "pass".into()
        } else {
            self.names().join("+")
        }
    }
}

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
    pub fn parse(s: &str) -> Result<ScoreKind, String> {
        match s {
            "selectivity" => Ok(ScoreKind::Selectivity),
            "auroc" => Ok(ScoreKind::Auroc),
            "topk" => Ok(ScoreKind::Topk),
            "iou" => Ok(ScoreKind::Iou),
            _ => Err(format!(
                "--score {s}: expected selectivity, auroc, topk or iou"
            )),
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

/// What to audit: the units of one side.
pub enum UnitSource {
    /// The dimensions of a hook.
    Neurons { hook: HookInfo },
    /// Chosen dimensions of a hook (a subset of the neurons, for a second pass).
    Columns { hook: HookInfo, columns: Vec<usize> },
    /// The features of an SAE reading `hook` (weights with any input scaling folded in).
    Features {
        hook: HookInfo,
        sae: Box<Sae>,
        name: String,
    },
}

impl UnitSource {
    fn hook(&self) -> &HookInfo {
        match self {
            UnitSource::Neurons { hook }
            | UnitSource::Columns { hook, .. }
            | UnitSource::Features { hook, .. } => hook,
        }
    }

    fn units(&self) -> usize {
        match self {
            UnitSource::Neurons { hook } => hook.d,
            UnitSource::Columns { columns, .. } => columns.len(),
            UnitSource::Features { sae, .. } => sae.d_sae,
        }
    }

    /// Unit-major activations `[units, rows]` of the hook rows `x [rows, d]`.
    fn activations(&self, x: &[f32]) -> Vec<f32> {
        match self {
            UnitSource::Neurons { hook } => {
                let d = hook.d;
                let rows = x.len() / d;
                let mut out = vec![0f32; d * rows];
                out.par_chunks_mut(rows.max(1))
                    .enumerate()
                    .for_each(|(u, col)| {
                        for (r, v) in col.iter_mut().enumerate() {
                            *v = x[r * d + u];
                        }
                    });
                out
            }
            UnitSource::Columns { hook, columns } => {
                let d = hook.d;
                let rows = x.len() / d;
                let mut out = vec![0f32; columns.len() * rows];
                out.par_chunks_mut(rows.max(1))
                    .zip(columns)
                    .for_each(|(col, &u)| {
                        for (r, v) in col.iter_mut().enumerate() {
                            *v = x[r * d + u];
                        }
                    });
                out
            }
            UnitSource::Features { sae, .. } => sae.encode_feature_major(x),
        }
    }

    /// The same source restricted to `units` (in that order).
    fn subset(&self, units: &[usize]) -> UnitSource {
        match self {
            UnitSource::Neurons { hook } => UnitSource::Columns {
                hook: hook.clone(),
                columns: units.to_vec(),
            },
            UnitSource::Columns { hook, columns } => UnitSource::Columns {
                hook: hook.clone(),
                columns: units.iter().map(|&u| columns[u]).collect(),
            },
            UnitSource::Features { hook, sae, name } => {
                let d = sae.d_in;
                let mut sub = Sae::zeros(d, units.len(), sae.apply_b_dec_to_input);
                for (i, &u) in units.iter().enumerate() {
                    sub.w_enc[i * d..(i + 1) * d].copy_from_slice(&sae.w_enc[u * d..(u + 1) * d]);
                    sub.b_enc[i] = sae.b_enc[u];
                }
                sub.b_dec.copy_from_slice(&sae.b_dec);
                UnitSource::Features {
                    hook: hook.clone(),
                    sae: Box::new(sub),
                    name: name.clone(),
                }
            }
        }
    }

    /// One unit's activation on one hook row.
    fn activation(&self, unit: usize, x: &[f32]) -> f32 {
        match self {
            UnitSource::Neurons { .. } => x[unit],
            UnitSource::Columns { columns, .. } => x[columns[unit]],
            UnitSource::Features { sae, .. } => {
                let d = sae.d_in;
                let w = &sae.w_enc[unit * d..(unit + 1) * d];
                let mut pre = sae.b_enc[unit];
                for j in 0..d {
                    let xin = if sae.apply_b_dec_to_input {
                        x[j] - sae.b_dec[j]
                    } else {
                        x[j]
                    };
                    pre += w[j] * xin;
                }
                pre.max(0.0)
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            UnitSource::Neurons { .. } | UnitSource::Columns { .. } => "neurons",
            UnitSource::Features { .. } => "features",
        }
    }

    fn name(&self) -> String {
        match self {
            UnitSource::Neurons { hook } | UnitSource::Columns { hook, .. } => hook.name.clone(),
            UnitSource::Features { name, .. } => name.clone(),
        }
    }
}

/// One of a unit's top activations.
#[derive(Debug, Clone, Copy)]
struct Top {
    value: f32,
    addr: RowAddr,
    concepts: u128,
}

/// Running statistics of one unit.
struct UnitAcc {
    /// Sorted, distinct quantile edges; bin b holds values in (edge[b-1], edge[b]].
    edges: Vec<f32>,
    zero_bin: usize,
    /// IoU mask threshold.
    t: f32,
    hist_all: Vec<u64>,
    /// `[concepts, BINS + 1]`.
    hist_on: Vec<u32>,
    /// Rows with a ≠ 0 (zeros are added to their bin at the end).
    nonzero: u64,
    sum_pos: f64,
    /// Σ max(a, 0)²: the spread of the unit, for the z of a difference of means.
    sum_sq_pos: f64,
    sum_on: Vec<f64>,
    fires: u64,
    fires_on: Vec<u32>,
    active: u64,
    active_on: Vec<u32>,
    max: f32,
    top: Vec<Top>,
    top_min: usize,
}

impl UnitAcc {
    fn new(mut sample: Vec<f32>, concepts: usize) -> UnitAcc {
        sample.sort_by(f32::total_cmp);
        let n = sample.len();
        let mut edges: Vec<f32> = (1..BINS)
            .filter_map(|j| sample.get(j * n / BINS).copied())
            .collect();
        edges.push(0.0);
        edges.sort_by(f32::total_cmp);
        edges.dedup();
        let t = if n == 0 {
            0.0
        } else {
            sample[((IOU_QUANTILE * n as f64) as usize).min(n - 1)].max(0.0)
        };
        let zero_bin = edges.partition_point(|&e| e < 0.0);
        UnitAcc {
            edges,
            zero_bin,
            t,
            hist_all: vec![0; BINS + 1],
            hist_on: vec![0; concepts * (BINS + 1)],
            nonzero: 0,
            sum_pos: 0.0,
            sum_sq_pos: 0.0,
            sum_on: vec![0.0; concepts],
            fires: 0,
            fires_on: vec![0; concepts],
            active: 0,
            active_on: vec![0; concepts],
            max: f32::NEG_INFINITY,
            top: vec![],
            top_min: 0,
        }
    }

    /// Adds one unit's activations over a chunk of rows.
    fn add(&mut self, acts: &[f32], masks: &[u128], addr: &[RowAddr], k: usize) {
        for ((&a, &m), &ad) in acts.iter().zip(masks).zip(addr) {
            if a == 0.0 {
                continue;
            }
            self.nonzero += 1;
            let bin = self.edges.partition_point(|&e| e < a);
            self.hist_all[bin] += 1;
            let pos = a.max(0.0) as f64;
            self.sum_pos += pos;
            self.sum_sq_pos += pos * pos;
            let fires = a > 0.0;
            // Ties at T count (T is a sample value); with T = 0 the mask is simply a > 0.
            let active = if self.t > 0.0 { a >= self.t } else { a > 0.0 };
            self.fires += fires as u64;
            self.active += active as u64;
            self.max = self.max.max(a);
            let mut bits = m;
            while bits != 0 {
                let c = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.hist_on[c * (BINS + 1) + bin] += 1;
                self.sum_on[c] += pos;
                self.fires_on[c] += fires as u32;
                self.active_on[c] += active as u32;
            }
            self.push_top(
                Top {
                    value: a,
                    addr: ad,
                    concepts: m,
                },
                k,
            );
        }
    }

    /// Keeps the k highest activations (earliest row first among equals).
    fn push_top(&mut self, t: Top, k: usize) {
        if self.top.len() < k {
            self.top.push(t);
            if self.top.len() == k {
                self.top_min = argmin(&self.top);
            }
        } else if k > 0 && t.value > self.top[self.top_min].value {
            self.top[self.top_min] = t;
            self.top_min = argmin(&self.top);
        }
    }

    /// Puts the zeros into their bin; `counts[c]` = tokens carrying c, `n` = all tokens.
    fn finish(&mut self, counts: &[u64], n: u64) {
        self.hist_all[self.zero_bin] += n - self.nonzero;
        for (c, &count) in counts.iter().enumerate() {
            let row = &mut self.hist_on[c * (BINS + 1)..(c + 1) * (BINS + 1)];
            let seen: u64 = row.iter().map(|&v| v as u64).sum();
            row[self.zero_bin] += (count - seen) as u32;
        }
        self.top
            .sort_by(|a, b| b.value.total_cmp(&a.value).then(a.addr.cmp(&b.addr)));
        if self.fires == 0 && self.max <= 0.0 {
            self.max = self.max.max(0.0);
        }
    }

    fn scores(&self, c: usize, count: u64, n: u64) -> Scores {
        let off = n - count;
        let mu_on = if count > 0 {
            self.sum_on[c] / count as f64
        } else {
            0.0
        };
        let mu_off = if off > 0 {
            (self.sum_pos - self.sum_on[c]).max(0.0) / off as f64
        } else {
            0.0
        };
        let selectivity = if mu_on + mu_off > 0.0 {
            ((mu_on - mu_off) / (mu_on + mu_off)).max(0.0)
        } else {
            0.0
        };
        let row = &self.hist_on[c * (BINS + 1)..(c + 1) * (BINS + 1)];
        let auroc = if count == 0 || off == 0 {
            0.5
        } else {
            let mut below = 0f64;
            let mut acc = 0f64;
            for (b, &p) in row.iter().enumerate() {
                let neg = (self.hist_all[b] - p as u64) as f64;
                acc += p as f64 * (below + 0.5 * neg);
                below += neg;
            }
            acc / (count as f64 * off as f64)
        };
        let topk = if self.top.is_empty() {
            0.0
        } else {
            self.top.iter().filter(|t| t.concepts >> c & 1 == 1).count() as f64
                / self.top.len() as f64
        };
        let z = self.z(mu_on - mu_off, count, off, n);
        let inter = self.active_on[c] as f64;
        let union = self.active as f64 + count as f64 - inter;
        let iou = if union > 0.0 { inter / union } else { 0.0 };
        Scores {
            selectivity,
            auroc,
            topk,
            iou,
            support: self.fires_on[c] as u64,
            z,
        }
    }

    /// Standard errors of a difference of means of max(a, 0) between groups of `n1` and `n2`
    /// tokens (out of `n`), with the unit's overall spread.
    fn z(&self, diff: f64, n1: u64, n2: u64, n: u64) -> f64 {
        if n1 == 0 || n2 == 0 || n == 0 {
            return 0.0;
        }
        let mean = self.sum_pos / n as f64;
        let var = (self.sum_sq_pos / n as f64 - mean * mean).max(0.0);
        let se = (var * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
        if se > 0.0 {
            diff / se
        } else if diff > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// P(X ≤ hits) for X ~ Binomial(k, p): how likely k random tokens hold at most `hits` tokens of
/// a concept on a share p of all tokens (summed in log space: (1 − p)^k underflows for large k).
pub fn binomial_cdf(hits: usize, k: usize, p: f64) -> f64 {
    if hits >= k || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // log pmf(i) from log pmf(i − 1): × (k − i + 1) / i × p / (1 − p).
    let mut logs = Vec::with_capacity(hits + 1);
    let mut l = k as f64 * lq;
    logs.push(l);
    for i in 1..=hits {
        l += ((k - i + 1) as f64 / i as f64).ln() + lp - lq;
        logs.push(l);
    }
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max + logs.iter().map(|x| (x - max).exp()).sum::<f64>().ln())
        .exp()
        .min(1.0)
}

fn argmin(top: &[Top]) -> usize {
    let mut m = 0;
    for (i, t) in top.iter().enumerate() {
        // Among equal values the latest row is dropped first.
        if t.value < top[m].value || (t.value == top[m].value && t.addr > top[m].addr) {
            m = i;
        }
    }
    m
}

/// The report and the full score table: per side, `[units, concepts]` row-major, with the tests
/// each pair failed (the same layout).
pub struct AuditOutput {
    pub report: AuditReport,
    pub scores: Vec<Vec<Scores>>,
    pub failed: Vec<Vec<Failed>>,
}

impl AuditOutput {
    /// The full table as CSV: one line per side × unit × concept.
    pub fn scores_csv(&self) -> String {
        let r = &self.report;
        let mut out = String::from(
            "kind,unit,concept,selectivity,auroc,topk,iou,support,z,passes,reason,class\n",
        );
        for ((side, table), failed) in r.sides.iter().zip(&self.scores).zip(&self.failed) {
            let nc = r.concepts.len();
            for (i, s) in table.iter().enumerate() {
                let (unit, c) = (i / nc, i % nc);
                let name = &r.concepts[c].name;
                // The final decision: every test and the explain-away pass.
                let passes = failed[i].passes();
                out.push_str(&format!(
                    "{},{unit},{},{:.6},{:.6},{:.6},{:.6},{},{:.3},{},{},{}\n",
                    side.kind,
                    csv_field(name),
                    s.selectivity,
                    s.auroc,
                    s.topk,
                    s.iou,
                    s.support,
                    s.z,
                    passes as u8,
                    failed[i].reason(),
                    side.unit_results[unit].class
                ));
            }
        }
        out
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The whole audit: both sides, one pass over the shards.
pub struct Audit<'a> {
    dataset: &'a Dataset,
    labeler: &'a Labeler,
    sides: Vec<UnitSource>,
    options: AuditOptions,
}

/// Per-block progress: (row groups done, row groups in all, tokens scored).
pub type Progress<'p> = &'p mut dyn FnMut(usize, usize, u64);

impl<'a> Audit<'a> {
    pub fn new(
        dataset: &'a Dataset,
        labeler: &'a Labeler,
        sides: Vec<UnitSource>,
        options: AuditOptions,
    ) -> Result<Self, String> {
        if sides.is_empty() {
            return Err("nothing to audit: give --hook (neurons) and/or --sae (features)".into());
        }
        let hook = sides[0].hook().name.clone();
        if sides.iter().any(|s| s.hook().name != hook) {
            return Err("--hook and the SAE's hook differ; audit one hook at a time".into());
        }
        if !(0.0..=1.0).contains(&options.threshold) {
            return Err(format!(
                "--threshold {}: must be in [0, 1]",
                options.threshold
            ));
        }
        if !(0.0..=1.0).contains(&options.min_auroc) {
            return Err(format!(
                "--min-auroc {}: must be in [0, 1] (0.5 is chance)",
                options.min_auroc
            ));
        }
        if !(0.0..1.0).contains(&options.topk_alpha) {
            return Err(format!(
                "--topk-alpha {}: must be in [0, 1) (0 turns the test off)",
                options.topk_alpha
            ));
        }
        if !(options.min_topk_lift >= 0.0 && options.min_topk_lift.is_finite()) {
            return Err(format!(
                "--min-topk-lift {}: must be a number >= 0 (1 = the concept's base rate)",
                options.min_topk_lift
            ));
        }
        Ok(Audit {
            dataset,
            labeler,
            sides,
            options,
        })
    }

    /// Runs the audit. `progress` is called after every block.
    /// One pass over the scored rows, `ROWS_PER_CHUNK` at a time: `f(hook rows [rows, d],
    /// concept sets, addresses)`. Labels (and their shuffle) are the same on every pass.
    fn pass(
        &self,
        stream: &mut BlockStream,
        progress: Progress,
        mut f: impl FnMut(&[f32], &[u128], &[RowAddr]),
    ) -> crate::store::Result<u64> {
        let d = self.sides[0].hook().d;
        stream.rewind();
        let total_groups = stream.row_groups();
        let mut n = 0u64;
        let mut block_index = 0u64;
        'blocks: while let Some(block) = stream.next_block()? {
            let (mut masks, keep) = self.label(&block);
            if let Some(seed) = self.options.shuffle_labels {
                use rand::seq::SliceRandom;
                use rand::SeedableRng;
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(crate::store::mix_seed(&[seed, block_index]));
                let mut kept: Vec<u128> = keep.iter().map(|&r| masks[r]).collect();
                kept.shuffle(&mut rng);
                for (&r, m) in keep.iter().zip(kept) {
                    masks[r] = m;
                }
            }
            block_index += 1;
            for chunk in keep.chunks(ROWS_PER_CHUNK) {
                let chunk = match self.options.max_tokens {
                    Some(max) if n + chunk.len() as u64 > max => &chunk[..(max - n) as usize],
                    _ => chunk,
                };
                if chunk.is_empty() {
                    break 'blocks;
                }
                let x: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&r| block.rows.acts[r * d..(r + 1) * d].iter().copied())
                    .collect();
                let m: Vec<u128> = chunk.iter().map(|&r| masks[r]).collect();
                let addr: Vec<RowAddr> = chunk.iter().map(|&r| block.addr[r]).collect();
                f(&x, &m, &addr);
                n += chunk.len() as u64;
            }
            progress(stream.position(), total_groups, n);
        }
        Ok(n)
    }

    /// Runs the audit. `progress` is called after every block (of each pass).
    pub fn run(&self, progress: Progress) -> crate::store::Result<AuditOutput> {
        let hook = self.sides[0].hook().clone();
        let nc = self.labeler.names().len();
        let mut stream = BlockStream::new(
            self.dataset,
            Some(hook.clone()),
            self.labeler.label_columns().to_vec(),
        )?;
        let mut accs: Vec<Vec<UnitAcc>> = self.bin_edges(&mut stream, &hook)?;
        let mut counts = vec![0u64; nc];
        let mut pair = vec![0u64; nc * nc];
        let n = self.pass(&mut stream, progress, |x, m, addr| {
            for &bits in m {
                let mut b = bits;
                while b != 0 {
                    let c = b.trailing_zeros() as usize;
                    b &= b - 1;
                    counts[c] += 1;
                    let mut o = bits;
                    while o != 0 {
                        let e = o.trailing_zeros() as usize;
                        o &= o - 1;
                        pair[c * nc + e] += 1;
                    }
                }
            }
            let rows = m.len();
            for (side, acc) in self.sides.iter().zip(accs.iter_mut()) {
                let a = side.activations(x);
                acc.par_iter_mut()
                    .zip(a.par_chunks(rows))
                    .for_each(|(u, col)| u.add(col, m, addr, self.options.top_k));
            }
        })?;
        if n == 0 {
            return Err(crate::store::StoreError::Loader(format!(
                "{}: no token rows to audit (all rows are special tokens?)",
                self.dataset.dir().display()
            )));
        }
        for acc in &mut accs {
            acc.par_iter_mut().for_each(|u| u.finish(&counts, n));
        }
        let concepts: Vec<ConceptInfo> = (0..nc)
            .map(|c| ConceptInfo {
                name: self.labeler.names()[c].clone(),
                source: self.labeler.sources()[c].to_string(),
                tokens: counts[c],
                base_rate: counts[c] as f64 / n as f64,
            })
            .collect();
        // Concept c lies inside concept p when p is the larger and carries at least
        // `related_overlap` of c's tokens (ties broken by index, so never both ways).
        let inside = |c: usize, p: usize| {
            c != p
                && counts[c] > 0
                && (counts[p], p) > (counts[c], c)
                && pair[c * nc + p] as f64 / counts[c] as f64 >= self.options.related_overlap
        };
        // Every unit × concept score and the tests it fails, once: `[units, concepts]` per side.
        let rates: Vec<f64> = counts.iter().map(|&k| k as f64 / n as f64).collect();
        let (scores, mut failed): (Vec<Vec<Scores>>, Vec<Vec<Failed>>) = accs
            .iter()
            .map(|acc| {
                acc.par_iter()
                    .flat_map_iter(|u| {
                        (0..nc).map(|c| {
                            let s = u.scores(c, counts[c], n);
                            (s, self.failed(&s, u.top.len(), rates[c]))
                        })
                    })
                    .unzip()
            })
            .unzip();
        let explained = self.explain_away(&mut stream, progress, &accs, &failed, n)?;
        for (table, explained) in failed.iter_mut().zip(&explained) {
            for (&unit, &dropped) in explained {
                for c in (0..nc).filter(|&c| dropped >> c & 1 == 1) {
                    table[unit * nc + c].0 |= Failed::EXPLAINED_AWAY;
                }
            }
        }
        let mut sides = vec![];
        for (((side, acc), table), fails) in self.sides.iter().zip(&accs).zip(&scores).zip(&failed)
        {
            let mut report = self.side_report(side, acc, table, fails, n, &inside);
            report.cards = self.cards(side, acc, table, &report, &mut stream)?;
            sides.push(report);
        }
        let report = AuditReport {
            version: AUDIT_VERSION,
            dataset: self.dataset.dir().display().to_string(),
            model: self.dataset.manifest().model.id.clone(),
            tokens: n,
            score: self.options.score.name().into(),
            threshold: self.options.threshold,
            min_support: self.options.min_support,
            min_z: self.options.min_z,
            min_auroc: self.options.min_auroc,
            topk_alpha: self.options.topk_alpha,
            min_topk_lift: self.options.min_topk_lift,
            top_k: self.options.top_k,
            related_overlap: self.options.related_overlap,
            concepts,
            sides,
        };
        Ok(AuditOutput {
            report,
            scores,
            failed,
        })
    }

    /// The tests (all but the explain-away pass) that a unit × concept pair fails; the concept
    /// is on `base_rate` of the scored tokens and the unit has `k` top activations. The score,
    /// support and z test the mean; AUROC and the top-k share test that the unit's ranks agree.
    fn failed(&self, s: &Scores, k: usize, base_rate: f64) -> Failed {
        let o = &self.options;
        let tests = [
            (Failed::SCORE, o.score.of(s) >= o.threshold),
            (Failed::SUPPORT, s.support >= o.min_support),
            (Failed::Z, s.z >= o.min_z),
            (Failed::AUROC, s.auroc >= o.min_auroc),
            (
                Failed::TOPK,
                binomial_cdf((s.topk * k as f64).round() as usize, k, base_rate) >= o.topk_alpha
                    && (o.min_topk_lift == 0.0
                        || (s.topk > 0.0 && s.topk >= o.min_topk_lift * base_rate)),
            ),
        ];
        Failed(
            tests
                .iter()
                .filter(|(_, ok)| !ok)
                .fold(0, |m, &(bit, _)| m | bit),
        )
    }

    /// The explain-away test, a second pass over the units that pass two or more concepts: a
    /// passing concept stays only when the unit still prefers it on the tokens that carry none
    /// of the unit's other passing concepts (selectivity of those tokens against the tokens with
    /// none of them ≥ threshold). Concepts that merely co-occur with the unit's real concept
    /// fail it. When fewer than `min_support` such tokens exist the concept is kept (no
    /// evidence either way). Returns, per side, unit → the bit set of concepts explained away.
    fn explain_away(
        &self,
        stream: &mut BlockStream,
        progress: Progress,
        accs: &[Vec<UnitAcc>],
        failed: &[Vec<Failed>],
        n: u64,
    ) -> crate::store::Result<Vec<BTreeMap<usize, u128>>> {
        let nc = self.labeler.names().len();
        // Per side: candidate units and their passing sets.
        let candidates: Vec<Vec<(usize, u128)>> = failed
            .iter()
            .map(|table| {
                table
                    .chunks(nc)
                    .enumerate()
                    .filter_map(|(unit, row)| {
                        let set = (0..nc)
                            .filter(|&c| row[c].passes())
                            .fold(0u128, |m, c| m | 1 << c);
                        (set.count_ones() >= 2).then_some((unit, set))
                    })
                    .collect()
            })
            .collect();
        if candidates.iter().all(|c| c.is_empty()) {
            return Ok(vec![BTreeMap::new(); accs.len()]);
        }
        let subsets: Vec<UnitSource> = self
            .sides
            .iter()
            .zip(&candidates)
            .map(|(side, cand)| side.subset(&cand.iter().map(|c| c.0).collect::<Vec<_>>()))
            .collect();
        // Per candidate unit: Σ a⁺, tokens and firings on "only c" tokens, and on "none" tokens.
        #[derive(Clone, Default)]
        struct Cond {
            sum_only: Vec<f64>,
            n_only: Vec<u64>,
            sum_none: f64,
            n_none: u64,
        }
        let mut conds: Vec<Vec<Cond>> = candidates
            .iter()
            .map(|c| {
                vec![
                    Cond {
                        sum_only: vec![0.0; nc],
                        n_only: vec![0; nc],
                        ..Cond::default()
                    };
                    c.len()
                ]
            })
            .collect();
        self.pass(stream, progress, |x, m, _| {
            let rows = m.len();
            for ((sub, cand), cond) in subsets.iter().zip(&candidates).zip(conds.iter_mut()) {
                if cand.is_empty() {
                    continue;
                }
                let a = sub.activations(x);
                cond.par_iter_mut()
                    .zip(cand.par_iter())
                    .zip(a.par_chunks(rows))
                    .for_each(|((k, &(_, set)), col)| {
                        for (&v, &bits) in col.iter().zip(m) {
                            let pos = v.max(0.0) as f64;
                            let inter = bits & set;
                            if inter == 0 {
                                k.sum_none += pos;
                                k.n_none += 1;
                            } else if inter.count_ones() == 1 {
                                let c = inter.trailing_zeros() as usize;
                                k.sum_only[c] += pos;
                                k.n_only[c] += 1;
                            }
                        }
                    });
            }
        })?;
        let t = self.options.threshold;
        Ok(candidates
            .iter()
            .zip(&conds)
            .zip(accs)
            .map(|((cand, cond), accs_side)| {
                let mut out = BTreeMap::new();
                for (&(unit, set), k) in cand.iter().zip(cond) {
                    let mu_none = k.sum_none / k.n_none.max(1) as f64;
                    let mut dropped = 0u128;
                    for c in (0..nc).filter(|&c| set >> c & 1 == 1) {
                        if k.n_only[c] < self.options.min_support {
                            continue;
                        }
                        let mu = k.sum_only[c] / k.n_only[c] as f64;
                        let sel = if mu + mu_none > 0.0 {
                            (mu - mu_none) / (mu + mu_none)
                        } else {
                            0.0
                        };
                        let z = accs_side[unit].z(mu - mu_none, k.n_only[c], k.n_none, n);
                        if sel < t || z < self.options.min_z {
                            dropped |= 1 << c;
                        }
                    }
                    if dropped != 0 {
                        out.insert(unit, dropped);
                    }
                }
                out
            })
            .collect())
    }

    /// Concept sets of every row of a block, and the rows to score (not special).
    fn label(&self, block: &Block) -> (Vec<u128>, Vec<usize>) {
        let mut masks = vec![0u128; block.rows.token.len()];
        for range in block.contexts() {
            let labels: Vec<&[Option<String>]> = block
                .rows
                .labels
                .iter()
                .map(|c| &c[range.clone()])
                .collect();
            let m = self.labeler.label(
                &block.rows.token[range.clone()],
                &block.rows.special[range.clone()],
                &labels,
            );
            masks[range].copy_from_slice(&m);
        }
        let keep = (0..masks.len())
            .filter(|&r| !block.rows.special[r])
            .collect();
        (masks, keep)
    }

    /// Reads evenly spaced row groups until `sample_rows` rows and places each unit's bins.
    fn bin_edges(
        &self,
        stream: &mut BlockStream,
        hook: &HookInfo,
    ) -> crate::store::Result<Vec<Vec<UnitAcc>>> {
        let groups = stream.plan().to_vec();
        let per_group = self.dataset.manifest().totals.rows as usize / groups.len().max(1);
        let want = self
            .options
            .sample_rows
            .div_ceil(per_group.max(1))
            .clamp(1, groups.len().max(1));
        let mut x = vec![];
        for i in 0..want.min(groups.len()) {
            let (s, g) = groups[i * groups.len() / want];
            let b = stream.read_row_group(s, g)?;
            for r in 0..b.rows.special.len() {
                if !b.rows.special[r] {
                    x.extend_from_slice(&b.rows.acts[r * hook.d..(r + 1) * hook.d]);
                }
            }
            if x.len() / hook.d.max(1) >= self.options.sample_rows {
                break;
            }
        }
        x.truncate(self.options.sample_rows * hook.d);
        let rows = x.len() / hook.d.max(1);
        let nc = self.labeler.names().len();
        Ok(self
            .sides
            .iter()
            .map(|side| {
                let a = side.activations(&x);
                (0..side.units())
                    .into_par_iter()
                    .map(|u| UnitAcc::new(a[u * rows..(u + 1) * rows].to_vec(), nc))
                    .collect()
            })
            .collect())
    }

    fn side_report(
        &self,
        side: &UnitSource,
        acc: &[UnitAcc],
        table: &[Scores],
        failed: &[Failed],
        n: u64,
        inside: &dyn Fn(usize, usize) -> bool,
    ) -> SideReport {
        let nc = self.labeler.names().len();
        let o = &self.options;
        let mut summary = Summary::default();
        let mut passing_histogram = vec![0u64; 6];
        let mut results = Vec::with_capacity(acc.len());
        for (unit, u) in acc.iter().enumerate() {
            let mut passing: Vec<PassingConcept> = vec![];
            let mut rejected: Vec<RejectedConcept> = vec![];
            let mut ids = vec![];
            let row = unit * nc..(unit + 1) * nc;
            for (c, (&s, &f)) in table[row.clone()].iter().zip(&failed[row]).enumerate() {
                let concept = self.labeler.names()[c].clone();
                if f.passes() {
                    passing.push(PassingConcept { concept, scores: s });
                    ids.push(c);
                } else if f.0 & Failed::SCORE == 0 {
                    rejected.push(RejectedConcept {
                        concept,
                        scores: s,
                        failed: f.names().iter().map(|n| n.to_string()).collect(),
                    });
                }
            }
            rejected.sort_by(|a, b| o.score.of(&b.scores).total_cmp(&o.score.of(&a.scores)));
            let mut order: Vec<usize> = (0..passing.len()).collect();
            order.sort_by(|&a, &b| {
                o.score
                    .of(&passing[b].scores)
                    .total_cmp(&o.score.of(&passing[a].scores))
            });
            let passing: Vec<PassingConcept> = order.iter().map(|&i| passing[i].clone()).collect();
            let dead = u.fires == 0;
            // A passing concept that lies inside a larger passing concept is subsumed by it
            // (sentence_end and code inside punctuation): what is left must hold two concepts
            // for the unit to be polysemantic.
            let heads: Vec<usize> = ids
                .iter()
                .copied()
                .filter(|&c| !ids.iter().any(|&p| inside(c, p)))
                .collect();
            let unrelated_pair = heads.len() >= 2;
            let class = if dead {
                summary.dead += 1;
                "dead"
            } else if unrelated_pair {
                summary.polysemantic += 1;
                "polysemantic"
            } else if !passing.is_empty() {
                summary.monosemantic += 1;
                "monosemantic"
            } else {
                summary.unexplained += 1;
                "unexplained"
            };
            if !dead {
                passing_histogram[passing.len().min(5)] += 1;
            }
            results.push(UnitResult {
                unit,
                class: class.into(),
                density: u.fires as f64 / n as f64,
                max_activation: u.max,
                concepts: passing,
                rejected,
            });
        }
        let alive = (acc.len() - summary.dead) as f64;
        if alive > 0.0 {
            summary.polysemantic_rate = summary.polysemantic as f64 / alive;
            summary.monosemantic_rate = summary.monosemantic as f64 / alive;
        }
        SideReport {
            kind: side.kind().into(),
            source: side.name(),
            hook: side.hook().name.clone(),
            units: acc.len(),
            summary,
            passing_histogram,
            log10_density: results
                .iter()
                .map(|r| {
                    if r.density > 0.0 {
                        r.density.log10() as f32
                    } else {
                        -10.0
                    }
                })
                .collect(),
            unit_results: results,
            cards: vec![],
        }
    }

    /// Cards: polysemantic units first, then monosemantic, then unexplained; best score first
    /// within a class. Examples are read back from the shards around each top activation.
    fn cards(
        &self,
        side: &UnitSource,
        acc: &[UnitAcc],
        table: &[Scores],
        report: &SideReport,
        stream: &mut BlockStream,
    ) -> crate::store::Result<Vec<Card>> {
        let o = &self.options;
        let rank = |c: &str| match c {
            "polysemantic" => 0,
            "monosemantic" => 1,
            "unexplained" => 2,
            _ => 3,
        };
        let best = |r: &UnitResult| r.concepts.first().map_or(0.0, |p| o.score.of(&p.scores));
        let mut chosen: Vec<&UnitResult> = report
            .unit_results
            .iter()
            .filter(|r| r.class != "dead")
            .collect();
        chosen.sort_by(|a, b| {
            rank(&a.class)
                .cmp(&rank(&b.class))
                .then(best(b).total_cmp(&best(a)))
                .then(b.density.total_cmp(&a.density))
                .then(a.unit.cmp(&b.unit))
        });
        chosen.truncate(o.cards);
        // Read each needed row group once.
        let mut needed: BTreeMap<(u32, u32), Block> = BTreeMap::new();
        for r in &chosen {
            for t in acc[r.unit].top.iter().take(o.examples) {
                needed.entry((t.addr.shard, t.addr.row_group)).or_default();
            }
        }
        for ((s, g), block) in needed.iter_mut() {
            *block = stream.read_row_group(*s as usize, *g as usize)?;
        }
        let d = side.hook().d;
        let n_concepts = self.labeler.names().len();
        let mut cards = vec![];
        for r in chosen {
            let u = &acc[r.unit];
            let mut examples = vec![];
            for t in u.top.iter().take(o.examples) {
                let block = &needed[&(t.addr.shard, t.addr.row_group)];
                let row = t.addr.row as usize;
                let ctx = block.rows.context_id[row];
                let lo = (row.saturating_sub(o.window)..=row)
                    .find(|&i| block.rows.context_id[i] == ctx)
                    .unwrap_or(row);
                let hi = (row..(row + o.window + 1).min(block.rows.context_id.len()))
                    .take_while(|&i| block.rows.context_id[i] == ctx)
                    .last()
                    .unwrap_or(row);
                examples.push(Example {
                    activation: t.value,
                    context_id: ctx,
                    tokens: block.rows.token[lo..=hi].to_vec(),
                    activations: (lo..=hi)
                        .map(|i| side.activation(r.unit, &block.rows.acts[i * d..(i + 1) * d]))
                        .collect(),
                    focus: row - lo,
                    focus_concepts: (0..n_concepts)
                        .filter(|&c| t.concepts >> c & 1 == 1)
                        .map(|c| self.labeler.names()[c].clone())
                        .collect(),
                });
            }
            let concept_scores = table[r.unit * n_concepts..(r.unit + 1) * n_concepts]
                .iter()
                .map(|s| o.score.of(s))
                .collect();
            cards.push(Card {
                unit: r.unit,
                class: r.class.clone(),
                concept_scores,
                examples,
            });
        }
        Ok(cards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_cdf_matches_closed_forms() {
        // P(X = 0) = (1 − p)^k; P(X ≤ 2) for Bin(50, 0.05) summed by hand.
        assert!((binomial_cdf(0, 50, 0.05) - 0.95f64.powi(50)).abs() < 1e-12);
        let by_hand: f64 = (0..=2u32)
            .map(|i| {
                let c = [1.0, 50.0, 1225.0][i as usize];
                c * 0.05f64.powi(i as i32) * 0.95f64.powi(50 - i as i32)
            })
            .sum();
        assert!((binomial_cdf(2, 50, 0.05) - by_hand).abs() < 1e-12);
        assert!((binomial_cdf(0, 50, 0.2) - 1.427e-5).abs() < 1e-8);
        // No underflow where (1 − p)^k does: the median of Bin(10 000, ½) has P ≈ ½ + pmf/2.
        let half = binomial_cdf(5000, 10_000, 0.5);
        assert!((half - 0.503989).abs() < 1e-5, "{half}");
        assert_eq!(binomial_cdf(50, 50, 0.3), 1.0);
        assert_eq!(binomial_cdf(0, 50, 0.0), 1.0);
        assert_eq!(binomial_cdf(3, 50, 1.0), 0.0);
    }

    #[test]
    fn failed_tests_are_named_in_order() {
        let f = Failed(Failed::AUROC | Failed::SUPPORT | Failed::EXPLAINED_AWAY);
        assert_eq!(f.names(), ["support", "auroc", "explained_away"]);
        assert_eq!(f.reason(), "support+auroc+explained_away");
        assert_eq!(Failed::default().reason(), "pass");
    }
}
