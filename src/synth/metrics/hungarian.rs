//! The linear assignment problem on a rectangular cost matrix: the one-to-one matching of rows
//! to columns with the least total cost. The shortest-augmenting-path algorithm of Jonker and
//! Volgenant as Crouse (2016) gives it for rectangular matrices — the one behind SciPy's
//! `linear_sum_assignment`, which SAELens's MCC calls — so the matching (ties included) is
//! SciPy's. O(r²·c) at worst for r ≤ c, far less on the near-diagonal costs of trained SAEs.

/// The cost given to non-finite entries: far above the costs this is used with (1 − |cos| ∈
/// [0, 1]), small enough that the dual variables keep those costs' precision in f64.
pub const UNUSABLE: f64 = 1e6;

/// Minimum-cost one-to-one matching of the rows of `cost [rows, cols]` (row-major) to its
/// columns: `min(rows, cols)` pairs `(row, col)`, sorted by row. `cost(i, j)` gives entries.
/// A non-finite cost (from a NaN weight) counts as [`UNUSABLE`]: matched only where nothing else
/// is left, and never a panic or an endless search.
pub fn linear_sum_assignment(
    rows: usize,
    cols: usize,
    cost: impl Fn(usize, usize) -> f64,
) -> Vec<(usize, usize)> {
    let cost = |i, j| {
        let c = cost(i, j);
        if c.is_finite() {
            c
        } else {
            UNUSABLE
        }
    };
    if rows <= cols {
        let col4row = assign_rows(rows, cols, &cost);
        col4row
            .into_iter()
            .enumerate()
            .filter(|&(_, j)| j != usize::MAX)
            .collect()
    } else {
        // As SciPy: solve the transpose, then sort the pairs by row.
        let row4col = assign_rows(cols, rows, &|i, j| cost(j, i));
        let mut pairs: Vec<(usize, usize)> = row4col
            .into_iter()
            .enumerate()
            .filter(|&(_, i)| i != usize::MAX)
            .map(|(j, i)| (i, j))
            .collect();
        pairs.sort_unstable();
        pairs
    }
}

/// The column of each row, for `rows ≤ cols`.
fn assign_rows(rows: usize, cols: usize, cost: &dyn Fn(usize, usize) -> f64) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let (mut u, mut v) = (vec![0f64; rows], vec![0f64; cols]);
    let mut shortest = vec![f64::INFINITY; cols];
    let mut path = vec![NONE; cols];
    let (mut col4row, mut row4col) = (vec![NONE; rows], vec![NONE; cols]);
    let (mut seen_row, mut seen_col) = (vec![false; rows], vec![false; cols]);
    let mut remaining = vec![0usize; cols];
    for cur_row in 0..rows {
        // Dijkstra from cur_row over reduced costs until a free column is reached.
        for (k, r) in remaining.iter_mut().enumerate() {
            *r = cols - k - 1;
        }
        let mut left = cols;
        seen_row.fill(false);
        seen_col.fill(false);
        shortest.fill(f64::INFINITY);
        let (mut i, mut min_val, mut sink) = (cur_row, 0f64, NONE);
        while sink == NONE {
            seen_row[i] = true;
            let (mut index, mut lowest) = (NONE, f64::INFINITY);
            for (k, &j) in remaining[..left].iter().enumerate() {
                let r = min_val + cost(i, j) - u[i] - v[j];
                if r < shortest[j] {
                    path[j] = i;
                    shortest[j] = r;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == NONE) {
                    lowest = shortest[j];
                    index = k;
                }
            }
            min_val = lowest;
            if index == NONE {
                // Only non-finite costs left; cannot happen for finite inputs.
                break;
            }
            let j = remaining[index];
            if row4col[j] == NONE {
                sink = j;
            } else {
                i = row4col[j];
            }
            seen_col[j] = true;
            left -= 1;
            remaining[index] = remaining[left];
        }
        if sink == NONE {
            break;
        }
        // Dual update, then augment along the path.
        u[cur_row] += min_val;
        for r in 0..rows {
            if seen_row[r] && r != cur_row {
                u[r] += min_val - shortest[col4row[r]];
            }
        }
        for c in 0..cols {
            if seen_col[c] {
                v[c] -= min_val - shortest[c];
            }
        }
        let mut j = sink;
        loop {
            let i = path[j];
            row4col[j] = i;
            std::mem::swap(&mut col4row[i], &mut j);
            if i == cur_row {
                break;
            }
        }
    }
    col4row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(c: &[Vec<f64>], pairs: &[(usize, usize)]) -> f64 {
        pairs.iter().map(|&(i, j)| c[i][j]).sum()
    }

    /// Every one-to-one matching of the smaller side, by brute force.
    fn brute_min(c: &[Vec<f64>]) -> f64 {
        fn go(c: &[Vec<f64>], i: usize, used: &mut Vec<bool>) -> f64 {
            if i == c.len() {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..c[0].len() {
                if !used[j] {
                    used[j] = true;
                    best = best.min(c[i][j] + go(c, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(c, 0, &mut vec![false; c[0].len()])
    }

    #[test]
    fn a_known_square_case() {
        // SciPy's documentation example: rows 0, 1, 2 → columns 1, 0, 2, total 5.
        let c = [
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        let pairs = linear_sum_assignment(3, 3, |i, j| c[i][j]);
        assert_eq!(pairs, vec![(0, 1), (1, 0), (2, 2)]);
        assert_eq!(total(&c, &pairs), 5.0);
    }

    #[test]
    fn nan_costs_do_not_panic() {
        let c = [[0.0, 5.0, 9.0], [f64::NAN; 3], [4.0, 1.0, 8.0]];
        let pairs = linear_sum_assignment(3, 3, |i, j| c[i][j]);
        // The all-NaN row takes the column the others leave.
        assert_eq!(pairs, vec![(0, 0), (1, 2), (2, 1)]);
        let tall = linear_sum_assignment(3, 2, |i, j| c[i][j]);
        assert_eq!(tall, vec![(0, 0), (2, 1)]);
    }

    #[test]
    fn rectangular_cases_match_brute_force() {
        // Deterministic pseudo-random costs, wide and tall.
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as f64 / (1u64 << 31) as f64
        };
        for (r, c) in [(3, 5), (5, 3), (4, 4), (2, 6), (6, 6)] {
            let m: Vec<Vec<f64>> = (0..r).map(|_| (0..c).map(|_| next()).collect()).collect();
            let pairs = linear_sum_assignment(r, c, |i, j| m[i][j]);
            assert_eq!(pairs.len(), r.min(c));
            let (mut rs, mut cs): (Vec<usize>, Vec<usize>) = pairs.iter().copied().unzip();
            rs.dedup();
            cs.sort_unstable();
            cs.dedup();
            assert_eq!((rs.len(), cs.len()), (r.min(c), r.min(c)), "not one-to-one");
            let want = if r <= c {
                brute_min(&m)
            } else {
                let t: Vec<Vec<f64>> = (0..c).map(|j| (0..r).map(|i| m[i][j]).collect()).collect();
                brute_min(&t)
            };
            assert!((total(&m, &pairs) - want).abs() < 1e-12, "{r}x{c}");
        }
    }
}
