//! Statistics measured on generated rows, to check them against the spec (tests, the truth
//! folder's `stats.json`, the SAELens comparison script): true L0, per-feature frequencies and
//! mean activations, and the hierarchy's two rules counted (a child firing without its parent;
//! two children of an exclusive parent firing together) — both must be 0.

use rayon::prelude::*;
use serde::Serialize;

use super::hierarchy::{Hierarchy, NONE};
use super::model::BenchModel;

/// What was measured over `rows` rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub rows: u64,
    /// Mean number of active features per row.
    pub l0: f64,
    /// Mean number of active features among the first 4096 (the benchmark's SAE width).
    pub l0_first_4096: f64,
    /// Fraction of rows in which each feature is active.
    pub frequencies: Vec<f64>,
    /// Mean activation of each feature when active (0 when never active).
    pub mean_active_value: Vec<f64>,
    /// Active children whose parent is not active.
    pub orphans: u64,
    /// Rows × exclusive parents with more than one active child.
    pub exclusion_violations: u64,
}

impl Stats {
    pub fn new(n: usize) -> Stats {
        Stats {
            frequencies: vec![0.0; n],
            mean_active_value: vec![0.0; n],
            ..Default::default()
        }
    }

    /// Counts one row's codes (sorted).
    pub fn add(&mut self, codes: &[(u32, f32)], h: &Hierarchy) {
        self.rows += 1;
        self.l0 += codes.len() as f64;
        self.l0_first_4096 += codes.iter().filter(|c| c.0 < 4096).count() as f64;
        let active = |f: u32| codes.binary_search_by_key(&f, |c| c.0).is_ok();
        for &(f, v) in codes {
            self.frequencies[f as usize] += 1.0;
            self.mean_active_value[f as usize] += v as f64;
            let fi = f as usize;
            if fi < h.size {
                let p = h.parent[fi];
                if p != NONE && !active(p) {
                    self.orphans += 1;
                }
                let (first, count) = h.children[fi];
                if h.exclusive[fi] && count > 0 {
                    let kids = codes
                        .iter()
                        .filter(|c| c.0 >= first && c.0 < first + count)
                        .count();
                    self.exclusion_violations += (kids > 1) as u64;
                }
            }
        }
    }

    fn merge(mut self, o: Stats) -> Stats {
        self.rows += o.rows;
        self.l0 += o.l0;
        self.l0_first_4096 += o.l0_first_4096;
        self.orphans += o.orphans;
        self.exclusion_violations += o.exclusion_violations;
        for (a, b) in self.frequencies.iter_mut().zip(&o.frequencies) {
            *a += b;
        }
        for (a, b) in self.mean_active_value.iter_mut().zip(&o.mean_active_value) {
            *a += b;
        }
        self
    }

    /// Sums → means.
    pub fn finish(mut self) -> Stats {
        let n = self.rows.max(1) as f64;
        self.l0 /= n;
        self.l0_first_4096 /= n;
        for (m, &c) in self.mean_active_value.iter_mut().zip(&self.frequencies) {
            *m = if c > 0.0 { *m / c } else { 0.0 };
        }
        self.frequencies.iter_mut().for_each(|f| *f /= n);
        self
    }
}

/// Statistics of rows `start .. start + rows` of `model`.
pub fn measure(model: &BenchModel, start: u64, rows: u64) -> Stats {
    let n = model.features();
    let h = &model.hierarchy;
    let chunk = 64 * super::model::GROUP as u64;
    (0..rows.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let first = start + c * chunk;
            let mut s = Stats::new(n);
            for codes in model.codes(first, chunk.min(start + rows - first) as usize) {
                s.add(&codes, h);
            }
            s
        })
        .reduce(|| Stats::new(n), Stats::merge)
        .finish()
}
