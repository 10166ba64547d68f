//! The feature hierarchy, as SAELens's `generate_hierarchy` builds it: `roots` trees, built
//! breadth first over the whole forest (features 0..roots are the roots, the next
//! roots·branching their children, and so on), `branching` children per parent down to `depth`
//! levels below the roots; a share `exclusive` of the parents have mutually exclusive children.
//!
//! Applied to a row (SAELens's modifier, level by level): a child fires only when its parent
//! does, and then (with `scale_children`) its magnitude is multiplied by parent activation /
//! parent mean magnitude; among the children of an exclusive parent that fire together, one
//! chosen uniformly at random survives. Because parents always have smaller indices than their
//! children here, one pass over a row's firing features in index order does exactly that.

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

    /// Applies the hierarchy to a row's firing features `row` (sorted by index, raw magnitudes),
    /// in place: children of silent parents dropped, exclusive siblings resolved (one survivor,
    /// uniformly at random), children scaled by parent / parent mean; zeros removed.
    pub fn apply(&self, row: &mut Vec<(u32, f32)>, mean: &[f32], rng: &mut RowRng) {
        if self.size == 0 {
            return;
        }
        let mut k = 0;
        while k < row.len() {
            let (f, v) = row[k];
            let f = f as usize;
            if f >= self.size {
                break;
            }
            let parent = self.parent[f];
            if parent != NONE {
                // The parent is earlier in the row, already final (or absent: silent).
                let pv = find(row, parent).unwrap_or(0.0);
                row[k].1 = match (pv > 0.0, self.scale_children) {
                    (false, _) => 0.0,
                    (true, true) => v * pv / mean[parent as usize],
                    (true, false) => v,
                };
            }
            if self.exclusive[f] && row[k].1 > 0.0 {
                exclude_siblings(row, self.children[f], rng);
            }
            k += 1;
        }
        row.retain(|&(_, v)| v > 0.0);
    }
}

/// The value of feature `f` in a sorted row.
fn find(row: &[(u32, f32)], f: u32) -> Option<f32> {
    row.binary_search_by_key(&f, |&(g, _)| g)
        .ok()
        .map(|i| row[i].1)
}

/// Keeps one of the firing children in `(first, count)`, uniformly at random; zeroes the others.
fn exclude_siblings(row: &mut [(u32, f32)], (first, count): (u32, u32), rng: &mut RowRng) {
    let lo = row.partition_point(|&(g, _)| g < first);
    let hi = row.partition_point(|&(g, _)| g < first + count);
    let active: Vec<usize> = (lo..hi).filter(|&i| row[i].1 > 0.0).collect();
    if active.len() < 2 {
        return;
    }
    let keep = active[rng.random_range(0..active.len())];
    for i in active {
        if i != keep {
            row[i].1 = 0.0;
        }
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
    fn apply_gates_scales_and_excludes() {
        let h = Hierarchy::build(&small(), &mut RowRng::for_row(0, 0, 0));
        let mean = vec![2.0f32; 40];
        let mut rng = RowRng::for_row(0, 0, 1);
        // Root 0 fires at 4 (twice its mean); children 2, 3 both fire; 9 (child of 2) fires;
        // 6 (child of the silent root 1) fires; 30 is outside the forest.
        let mut row = vec![(0, 4.0), (2, 1.0), (3, 1.5), (6, 1.0), (9, 1.0), (30, 3.0)];
        h.apply(&mut row, &mean, &mut rng);
        let ids: Vec<u32> = row.iter().map(|r| r.0).collect();
        assert!(ids == [0, 2, 9, 30] || ids == [0, 3, 30], "{ids:?}");
        if ids[1] == 2 {
            assert_eq!(row[1].1, 2.0); // 1 · 4 / 2
            assert_eq!(row[2].1, 1.0); // 1 · 2 / 2
        } else {
            assert_eq!(row[1].1, 3.0);
        }
    }
}
