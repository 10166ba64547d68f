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
//! `Audit::explain_away`, in explain.rs) when the unit passes several. Every rejection keeps the tests it
//! failed ([`Failed`]), shown in audit.json and scores.csv. A unit is dead
//! when it is never > 0, polysemantic when two passing concepts remain after those lying inside
//! a larger passing concept (|A∩B| / |A| ≥ `related_overlap`) are subsumed by it, monosemantic
//! when some concept passes, unexplained otherwise.
//!
//! Memory is bounded by units × concepts × bins, whatever the number of tokens: the quantile bin
//! edges come from a sample of row groups read first.
//!
//! Files, in the order of the computation:
//! - error.rs    — [`AuditError`]: the settings it refuses
//! - options.rs  — [`AuditOptions`] and [`ScoreKind`]
//! - units.rs    — [`UnitSource`]: neurons, a subset of them, or SAE features encoded on the fly
//! - stream.rs   — the passes over the shards (labelled, shuffled, chunked) and the bin sample
//! - stats.rs    — per-unit running statistics and the scores; concept co-occurrence
//! - decision.rs — the tests ([`Failed`], the reasons) and each unit's class
//! - explain.rs  — the explain-away pass
//! - output.rs   — the report, its cards and scores.csv ([`AuditOutput`])
//! - bands.rs    — per unit, for its dashboard: log2 histogram, samples of bands of its maximum
//! - browse.rs   — every unit's dashboard data ([`UnitDetail`]): contexts read back, neighbours

mod bands;
mod browse;
mod decision;
mod error;
mod explain;
mod options;
mod output;
mod stats;
mod stream;
mod units;

use rayon::prelude::*;

use super::blocks::BlockStream;
use super::concepts::Labeler;
use crate::store::Dataset;

pub use browse::{dedup, nearest_decoder, UnitDetail, BANDS, SHOWN};
pub use decision::Failed;
pub use error::AuditError;
pub use options::{AuditOptions, ScoreKind};
pub use output::AuditOutput;
pub use stats::binomial_cdf;
pub use units::UnitSource;

use stats::{Cooccurrence, UnitAcc};

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
    ) -> Result<Self, AuditError> {
        let Some(first) = sides.first() else {
            return Err(AuditError::NothingToAudit);
        };
        let hook = &first.hook().name;
        if let Some(other) = sides.iter().find(|s| s.hook().name != *hook) {
            return Err(AuditError::HooksDiffer {
                first: hook.clone(),
                other: other.hook().name.clone(),
            });
        }
        if !(0.0..=1.0).contains(&options.threshold) {
            return Err(AuditError::Threshold(options.threshold));
        }
        if !(0.0..=1.0).contains(&options.min_auroc) {
            return Err(AuditError::MinAuroc(options.min_auroc));
        }
        if !(0.0..1.0).contains(&options.topk_alpha) {
            return Err(AuditError::TopkAlpha(options.topk_alpha));
        }
        if !(options.min_topk_lift >= 0.0 && options.min_topk_lift.is_finite()) {
            return Err(AuditError::MinTopkLift(options.min_topk_lift));
        }
        Ok(Audit {
            dataset,
            labeler,
            sides,
            options,
        })
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
        let mut co = Cooccurrence::new(nc);
        let n = self.pass(&mut stream, progress, |x, m, addr| {
            co.add(m);
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
            acc.par_iter_mut().for_each(|u| u.finish(&co.counts, n));
        }
        let concepts = self.concept_infos(&co.counts, n);
        let inside = |c: usize, p: usize| co.inside(c, p, self.options.related_overlap);
        let (scores, mut failed) = self.score_table(&accs, &co.counts, n);
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
        let details = self.details(&accs, n, &mut stream, progress)?;
        Ok(AuditOutput {
            report: self.report(n, concepts, sides),
            scores,
            failed,
            details,
        })
    }
}
