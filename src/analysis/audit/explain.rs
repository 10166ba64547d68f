//! Explaining away: a second pass over the units that pass two or more concepts, dropping the
//! concepts that only co-occur with the unit's real one.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::decision::Failed;
use super::stats::UnitAcc;
use super::units::UnitSource;
use super::{Audit, Progress};
use crate::analysis::blocks::BlockStream;

/// A candidate unit and the bit set of its passing concepts.
type Candidate = (usize, u128);

/// Per candidate unit: Σ a⁺ and tokens on "only c" tokens (c the one passing concept the token
/// carries), and on "none" tokens (no passing concept).
#[derive(Clone, Default)]
struct Cond {
    sum_only: Vec<f64>,
    n_only: Vec<u64>,
    sum_none: f64,
    n_none: u64,
}

impl Cond {
    fn new(nc: usize) -> Cond {
        Cond {
            sum_only: vec![0.0; nc],
            n_only: vec![0; nc],
            ..Cond::default()
        }
    }

    /// Adds the unit's activations `col` over a chunk of rows with concept sets `masks`.
    fn add(&mut self, col: &[f32], masks: &[u128], set: u128) {
        for (&v, &bits) in col.iter().zip(masks) {
            let pos = v.max(0.0) as f64;
            let inter = bits & set;
            if inter == 0 {
                self.sum_none += pos;
                self.n_none += 1;
            } else if inter.count_ones() == 1 {
                let c = inter.trailing_zeros() as usize;
                self.sum_only[c] += pos;
                self.n_only[c] += 1;
            }
        }
    }
}

impl Audit<'_> {
    /// The explain-away test, a second pass over the units that pass two or more concepts: a
    /// passing concept stays only when the unit still prefers it on the tokens that carry none
    /// of the unit's other passing concepts (selectivity of those tokens against the tokens with
    /// none of them ≥ threshold). Concepts that merely co-occur with the unit's real concept
    /// fail it. When fewer than `min_support` such tokens exist the concept is kept (no
    /// evidence either way). Returns, per side, unit → the bit set of concepts explained away.
    pub(super) fn explain_away(
        &self,
        stream: &mut BlockStream,
        progress: Progress,
        accs: &[Vec<UnitAcc>],
        failed: &[Vec<Failed>],
        n: u64,
    ) -> crate::store::Result<Vec<BTreeMap<usize, u128>>> {
        let nc = self.labeler.names().len();
        let candidates = candidates(failed, nc);
        if candidates.iter().all(|c| c.is_empty()) {
            return Ok(vec![BTreeMap::new(); accs.len()]);
        }
        let subsets: Vec<UnitSource> = self
            .sides
            .iter()
            .zip(&candidates)
            .map(|(side, cand)| side.subset(&cand.iter().map(|c| c.0).collect::<Vec<_>>()))
            .collect();
        let mut conds: Vec<Vec<Cond>> = candidates
            .iter()
            .map(|c| vec![Cond::new(nc); c.len()])
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
                    .for_each(|((k, &(_, set)), col)| k.add(col, m, set));
            }
        })?;
        Ok(candidates
            .iter()
            .zip(&conds)
            .zip(accs)
            .map(|((cand, cond), accs_side)| {
                let mut out = BTreeMap::new();
                for (&(unit, set), k) in cand.iter().zip(cond) {
                    let dropped = self.explained(&accs_side[unit], k, set, nc, n);
                    if dropped != 0 {
                        out.insert(unit, dropped);
                    }
                }
                out
            })
            .collect())
    }

    /// The concepts of `set` that unit `u` no longer prefers on their "only c" tokens, as bits.
    fn explained(&self, u: &UnitAcc, k: &Cond, set: u128, nc: usize, n: u64) -> u128 {
        let t = self.options.threshold;
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
            let z = u.z(mu - mu_none, k.n_only[c], k.n_none, n);
            if sel < t || z < self.options.min_z {
                dropped |= 1 << c;
            }
        }
        dropped
    }
}

/// Per side: the units that pass two or more concepts, with their passing sets.
fn candidates(failed: &[Vec<Failed>], nc: usize) -> Vec<Vec<Candidate>> {
    failed
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
        .collect()
}
