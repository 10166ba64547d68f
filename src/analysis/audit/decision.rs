//! The decision: the tests each unit × concept pair must pass ([`Failed`] keeps the ones it
//! fails, as its reasons) and each unit's class (dead, polysemantic, monosemantic, unexplained)
//! from the concepts that pass.

use rayon::prelude::*;

use super::stats::{binomial_cdf, UnitAcc};
use super::units::UnitSource;
use super::Audit;
use crate::analysis::report::{
    PassingConcept, RejectedConcept, Scores, SideReport, Summary, UnitResult,
};

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

impl Audit<'_> {
    /// Every unit × concept score and the tests it fails (all but the explain-away pass), once:
    /// `[units, concepts]` per side. `counts[c]` = tokens carrying c, `n` = all scored tokens.
    pub(super) fn score_table(
        &self,
        accs: &[Vec<UnitAcc>],
        counts: &[u64],
        n: u64,
    ) -> (Vec<Vec<Scores>>, Vec<Vec<Failed>>) {
        let nc = counts.len();
        let rates: Vec<f64> = counts.iter().map(|&k| k as f64 / n as f64).collect();
        accs.iter()
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
            .unzip()
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

    /// One side's results: every unit's class with its passing and rejected concepts, the
    /// class counts and rates, and the histograms (cards are added later).
    /// `inside(c, p)`: concept c lies inside concept p.
    pub(super) fn side_report(
        &self,
        side: &UnitSource,
        acc: &[UnitAcc],
        table: &[Scores],
        failed: &[Failed],
        n: u64,
        inside: &dyn Fn(usize, usize) -> bool,
    ) -> SideReport {
        let nc = self.labeler.names().len();
        let mut summary = Summary::default();
        let mut passing_histogram = vec![0u64; 6];
        let mut results = Vec::with_capacity(acc.len());
        for (unit, u) in acc.iter().enumerate() {
            let row = unit * nc..(unit + 1) * nc;
            let result = self.unit_result(unit, u, &table[row.clone()], &failed[row], n, inside);
            match result.class.as_str() {
                "dead" => summary.dead += 1,
                "polysemantic" => summary.polysemantic += 1,
                "monosemantic" => summary.monosemantic += 1,
                _ => summary.unexplained += 1,
            }
            if result.class != "dead" {
                passing_histogram[result.concepts.len().min(5)] += 1;
            }
            results.push(result);
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

    /// One unit's class, its passing concepts (best score first) and the concepts rejected by a
    /// test other than the score (best score first, with the tests they failed). `scores` and
    /// `failed` are the unit's row of the tables.
    fn unit_result(
        &self,
        unit: usize,
        u: &UnitAcc,
        scores: &[Scores],
        failed: &[Failed],
        n: u64,
        inside: &dyn Fn(usize, usize) -> bool,
    ) -> UnitResult {
        let o = &self.options;
        let mut passing: Vec<PassingConcept> = vec![];
        let mut rejected: Vec<RejectedConcept> = vec![];
        let mut ids = vec![];
        for (c, (&s, &f)) in scores.iter().zip(failed).enumerate() {
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
            "dead"
        } else if unrelated_pair {
            "polysemantic"
        } else if !passing.is_empty() {
            "monosemantic"
        } else {
            "unexplained"
        };
        UnitResult {
            unit,
            class: class.into(),
            density: u.fires as f64 / n as f64,
            max_activation: u.max,
            concepts: passing,
            rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_tests_are_named_in_order() {
        let f = Failed(Failed::AUROC | Failed::SUPPORT | Failed::EXPLAINED_AWAY);
        assert_eq!(f.names(), ["support", "auroc", "explained_away"]);
        assert_eq!(f.reason(), "support+auroc+explained_away");
        assert_eq!(Failed::default().reason(), "pass");
    }
}
