//! The feature hierarchy, as SAELens's `generate_hierarchy` builds it: `roots` trees, built
//! breadth first over the whole forest (features 0..roots are the roots, the next
//! roots·branching their children, and so on), `branching` children per parent down to `depth`
//! levels below the roots; a share `exclusive` of the parents have mutually exclusive children.
//!
//! Applied to a row (SAELens's modifier, level by level): a child fires only when its parent
//! does, and then (with `scale_children`) its magnitude is multiplied by parent activation /
//! parent mean magnitude; among the children of an exclusive parent that fire together, one
//! chosen uniformly at random survives. [`Hierarchy::walk`] draws a child's test only when its
//! parent survived: the same distribution (a silent parent zeroes its children whatever they
//! drew), without testing the thousands of children of silent parents that compensation makes
//! likely to fire.

use rand::seq::index::sample;
use rand::Rng;

use super::normal::RowRng;
use super::spec::BenchSpec;

/// No parent.
pub const NONE: u32 = u32::MAX;

/// The forest over the first [`Hierarchy::size`] features.
#[derive(Debug, Clone, Default)]
pub struct Hierarchy {
    /// `parent[f]`, or [`NONE`] (roots and features outside the forest); length `features`.
    pub parent: Vec<u32>,
    /// `children[f] = (first, count)`: children are consecutive indices (breadth-first build).
    pub children: Vec<(u32, u32)>,
    /// Whether `f`'s children are mutually exclusive.
    pub exclusive: Vec<bool>,
    /// Children scaled by parent activation / parent mean.
    pub scale_children: bool,
    /// Features inside the forest (0..size).
    pub size: usize,
    /// Roots (features 0..roots).
    pub roots: usize,
}

impl Hierarchy {
    /// Builds the forest of `spec` (empty with `roots = 0`); `rng` picks the exclusive parents
    /// when `exclusive` < 1.
    pub fn build(spec: &BenchSpec, rng: &mut RowRng) -> Hierarchy {
        let n = spec.features;
        let mut h = Hierarchy {
            parent: vec![NONE; n],
            children: vec![(0, 0); n],
            exclusive: vec![false; n],
            scale_children: spec.scale_children,
            size: 0,
            roots: spec.roots.min(n),
        };
        let mut next = spec.roots.min(n);
        // Every node that may have children, with its depth (roots: 0).
        let mut parents: Vec<(usize, usize)> = (0..next).map(|r| (r, 0)).collect();
        let mut level: Vec<(usize, usize)> = parents.clone();
        while !level.is_empty() {
            let mut below = vec![];
            for &(p, depth) in &level {
                if depth >= spec.depth {
                    continue;
                }
                let first = next;
                let count = spec.branching.min(n - next);
                for c in first..first + count {
                    h.parent[c] = p as u32;
                    if depth + 1 < spec.depth {
                        below.push((c, depth + 1));
                        parents.push((c, depth + 1));
                    }
                }
                h.children[p] = (first as u32, count as u32);
                next += count;
            }
            level = below;
        }
        h.size = next;
        let eligible: Vec<usize> = parents
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| h.children[p].1 >= 2)
            .collect();
        let chosen = (eligible.len() as f64 * spec.exclusive) as usize;
        if chosen == eligible.len() {
            eligible.iter().for_each(|&p| h.exclusive[p] = true);
        } else {
            for k in sample(rng, eligible.len(), chosen) {
                h.exclusive[eligible[k]] = true;
            }
        }
        h
    }

    /// SAELens's `compute_probability_correction_factors`: a child's probability is divided by
    /// its parent's base probability, and a child of an exclusive parent is multiplied by
    /// 1 + (its siblings' base probabilities) / (the parent's); the result is capped at 1.
    // Indexes three arrays by feature id; an index loop reads plainest.
    #[allow(clippy::needless_range_loop)]
    pub fn compensate(&self, base: &[f64]) -> Vec<f64> {
        let mut p = base.to_vec();
        for f in 0..self.size {
            let parent = self.parent[f];
            if parent != NONE && base[parent as usize] > 0.0 {
                p[f] /= base[parent as usize];
            }
        }
        for f in 0..self.size {
            let (first, count) = self.children[f];
            if !self.exclusive[f] || count < 2 || base[f] <= 0.0 {
                continue;
            }
            let kids = first as usize..(first + count) as usize;
            let total: f64 = base[kids.clone()].iter().sum();
            for c in kids {
                p[c] *= 1.0 + (total - base[c]).max(0.0) / base[f];
            }
        }
        p.iter_mut().for_each(|v| *v = v.min(1.0));
        p
    }

    /// A row's hierarchy features, breadth first: the roots tested, then the children of each
    /// surviving node tested (`fires(rng, f)`), given magnitudes (`magnitude(rng, f)`,
    /// 0 counting as silent), reduced to one uniformly random survivor under an exclusive parent,
    /// and scaled by parent / parent mean. Returns (feature, value) sorted by feature.
    pub fn walk(
        &self,
        mean: &[f32],
        rng: &mut RowRng,
        fires: &dyn Fn(&mut RowRng, usize) -> bool,
        magnitude: &dyn Fn(&mut RowRng, usize) -> f32,
    ) -> Vec<(u32, f32)> {
        let draw = |rng: &mut RowRng, f: usize| -> Option<f32> {
            if !fires(rng, f) {
                return None;
            }
            Some(magnitude(rng, f)).filter(|&v| v > 0.0)
        };
        let mut row: Vec<(u32, f32)> = (0..self.roots)
            .filter_map(|r| draw(rng, r).map(|v| (r as u32, v)))
            .collect();
        let mut kids = vec![];
        let mut k = 0;
        while k < row.len() {
            let (p, pv) = row[k];
            k += 1;
            let (first, count) = self.children[p as usize];
            kids.clear();
            for c in first..first + count {
                if let Some(v) = draw(rng, c as usize) {
                    kids.push((c, v));
                }
            }
            if self.exclusive[p as usize] && kids.len() > 1 {
                let keep = kids[rng.random_range(0..kids.len())];
                kids.clear();
                kids.push(keep);
            }
            let scale = if self.scale_children {
                pv / mean[p as usize]
            } else {
                1.0
            };
            // Breadth first is index order here: the row stays sorted.
            row.extend(kids.iter().map(|&(c, v)| (c, v * scale)));
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> BenchSpec {
        BenchSpec {
            features: 40,
            roots: 2,
            branching: 3,
            depth: 2,
            ..BenchSpec::default()
        }
    }

    #[test]
    fn breadth_first_layout() {
        let h = Hierarchy::build(&small(), &mut RowRng::for_row(0, 0, 0));
        // roots 0, 1; their children 2..5 and 5..8; grandchildren 8..17 and 17..26.
        assert_eq!(h.size, 2 + 6 + 18);
        assert_eq!(h.children[0], (2, 3));
        assert_eq!(h.children[1], (5, 3));
        assert_eq!(h.children[2], (8, 3));
        assert_eq!(h.parent[7], 1);
        assert_eq!(h.parent[25], 7);
        assert_eq!(h.parent[26], NONE);
        assert!(h.exclusive[0] && h.exclusive[7] && !h.exclusive[8]);
    }

    #[test]
    fn compensation_as_saelens() {
        let s = BenchSpec {
            features: 4,
            roots: 1,
            branching: 3,
            depth: 1,
            ..BenchSpec::default()
        };
        let h = Hierarchy::build(&s, &mut RowRng::for_row(0, 0, 0));
        let p = h.compensate(&[0.5, 0.1, 0.1, 0.2]);
        // child 1: 0.1 / 0.5 · (1 + 0.3 / 0.5)
        assert!((p[1] - 0.2 * 1.6).abs() < 1e-12);
        assert!((p[3] - 0.4 * 1.4).abs() < 1e-12);
        assert_eq!(p[0], 0.5);
    }

    #[test]
    fn walk_gates_scales_and_excludes() {
        let h = Hierarchy::build(&small(), &mut RowRng::for_row(0, 0, 0));
        let mean = vec![2.0f32; 40];
        // Fires: root 0 (magnitude 4, twice its mean), its children 2 and 3, 9 (child of 2),
        // 6 (child of the silent root 1); every magnitude 1 but the root's.
        let on = [0usize, 2, 3, 6, 9];
        let fires =
            |rng: &mut RowRng, f: usize| rng.uniform() < if on.contains(&f) { 1.0 } else { 0.0 };
        let magnitude = |_: &mut RowRng, f: usize| if f == 0 { 4.0 } else { 1.0 };
        let (mut twos, mut threes) = (0, 0);
        for seed in 0..40 {
            let row = h.walk(&mean, &mut RowRng::for_row(seed, 0, 1), &fires, &magnitude);
            // 2 and 3 exclude each other; 9 survives only under 2; 6's root is silent.
            if row == [(0, 4.0), (2, 2.0), (9, 1.0)] {
                twos += 1;
            } else {
                assert_eq!(row, [(0, 4.0), (3, 2.0)]);
                threes += 1;
            }
        }
        assert!(twos > 5 && threes > 5, "{twos} / {threes}");
    }
}
