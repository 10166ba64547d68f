//! Running per-hook statistics over non-special rows: count, mean vector and mean L2 norm.
//! Sums are kept in f64 and each batch is summed into a fresh accumulator first, then merged, so
//! a billion rows lose no more than ~1e-9 relative precision.

use serde::{Deserialize, Serialize};

/// The statistics of one hook as stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookStats {
    /// Rows counted (non-special rows).
    pub count: u64,
    /// Mean of each of the `d` components.
    pub mean: Vec<f64>,
    /// Mean of the rows' L2 norms (what input scaling to E‖x‖ = √d needs).
    pub mean_norm: f64,
}

/// Accumulator behind [`HookStats`]: sums, not means, so accumulating and merging are exact
/// additions.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningStats {
    count: u64,
    sum: Vec<f64>,
    sum_norm: f64,
}

/// Statistics of two widths cannot be merged (the caller names the file or hook).
#[derive(Debug, thiserror::Error)]
#[error("cannot merge statistics of width {from} into width {into}")]
pub struct WidthMismatch {
    /// The width merged in.
    pub from: usize,
    /// The accumulator's width.
    pub into: usize,
}

impl RunningStats {
    /// Empty statistics for rows of width `d`.
    pub fn new(d: usize) -> Self {
        RunningStats {
            count: 0,
            sum: vec![0.0; d],
            sum_norm: 0.0,
        }
    }

    /// Reconstructs the accumulator from stored statistics (to continue a resumed run).
    pub fn from_stats(stats: &HookStats) -> Self {
        let n = stats.count as f64;
        RunningStats {
            count: stats.count,
            sum: stats.mean.iter().map(|m| m * n).collect(),
            sum_norm: stats.mean_norm * n,
        }
    }

    /// Width of the rows.
    pub fn d(&self) -> usize {
        self.sum.len()
    }

    /// Rows counted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds one row of `d` values (a shorter row adds to the first components only). To keep
    /// precision over billions of rows, push a batch's rows into a fresh accumulator and
    /// [`RunningStats::merge`] it into the running one.
    #[inline(always)] // into the writer's AVX2/AVX-512 builds of its row loop
    pub fn push_row(&mut self, row: &[f32]) {
        // Eight partial sums of squares: one serial chain of d dependent f64 adds cannot be
        // vectorised, and this runs on the writer thread for every stored value.
        let mut sq = [0.0f64; 8];
        for (s8, x8) in self.sum.chunks_mut(8).zip(row.chunks(8)) {
            for ((s, &x), q) in s8.iter_mut().zip(x8).zip(&mut sq) {
                let x = x as f64;
                *s += x;
                *q += x * x;
            }
        }
        self.sum_norm += sq.iter().sum::<f64>().sqrt();
        self.count += 1;
    }

    /// Adds another accumulator of the same width.
    pub fn merge(&mut self, other: &RunningStats) -> Result<(), WidthMismatch> {
        if other.d() != self.d() {
            return Err(WidthMismatch {
                from: other.d(),
                into: self.d(),
            });
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        self.sum_norm += other.sum_norm;
        self.count += other.count;
        Ok(())
    }

    /// The statistics so far (zeros when no row was counted).
    pub fn stats(&self) -> HookStats {
        let n = self.count.max(1) as f64;
        HookStats {
            count: self.count,
            mean: self.sum.iter().map(|s| s / n).collect(),
            mean_norm: self.sum_norm / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of `values` (`rows × d`) whose `keep` flag is true.
    fn push_rows(s: &mut RunningStats, values: &[f32], keep: &[bool]) {
        for (row, &k) in values.chunks_exact(s.d()).zip(keep) {
            if k {
                s.push_row(row);
            }
        }
    }

    #[test]
    fn mean_and_norm_skip_unkept_rows() {
        let mut s = RunningStats::new(2);
        push_rows(
            &mut s,
            &[3.0, 4.0, 100.0, 100.0, 0.0, 2.0],
            &[true, false, true],
        );
        let st = s.stats();
        assert_eq!(st.count, 2);
        assert_eq!(st.mean, vec![1.5, 3.0]);
        assert_eq!(st.mean_norm, 3.5);
    }

    #[test]
    fn merge_equals_accumulating_everything() {
        let rows = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut all = RunningStats::new(2);
        push_rows(&mut all, &rows, &[true; 3]);
        let mut a = RunningStats::new(2);
        push_rows(&mut a, &rows[..2], &[true]);
        let mut b = RunningStats::new(2);
        push_rows(&mut b, &rows[2..], &[true, true]);
        // Round trip through the stored form, as merging manifests does.
        let mut merged = RunningStats::from_stats(&a.stats());
        merged.merge(&RunningStats::from_stats(&b.stats())).unwrap();
        let (x, y) = (merged.stats(), all.stats());
        assert_eq!(x.count, y.count);
        for (p, q) in x.mean.iter().zip(&y.mean) {
            assert!((p - q).abs() < 1e-12);
        }
        assert!((x.mean_norm - y.mean_norm).abs() < 1e-12);
        assert!(a.merge(&RunningStats::new(3)).is_err());
    }
}
