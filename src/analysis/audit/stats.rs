//! Running statistics of one unit (quantile histogram, sums, top-k activations) and the scores
//! they give per concept: selectivity, AUROC, top-k share, IoU, support, z; the binomial tail of
//! the top-k test; concept counts and co-occurrence.

use super::bands::Bands;
use crate::analysis::blocks::RowAddr;
use crate::analysis::report::Scores;

/// Histogram bins per unit (quantile edges; at most this many + 1 bins).
const BINS: usize = 32;
/// Network Dissection's activation quantile for the IoU mask.
const IOU_QUANTILE: f64 = 0.995;

/// One of a unit's top activations.
#[derive(Debug, Clone, Copy)]
pub(super) struct Top {
    pub(super) value: f32,
    pub(super) addr: RowAddr,
    pub(super) concepts: u128,
}

/// Running statistics of one unit.
pub(super) struct UnitAcc {
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
    pub(super) fires: u64,
    fires_on: Vec<u32>,
    active: u64,
    active_on: Vec<u32>,
    pub(super) max: f32,
    pub(super) top: Vec<Top>,
    top_min: usize,
    /// For the unit's dashboard: log2 histogram and band samples (not used by any score).
    pub(super) bands: Bands,
}

impl UnitAcc {
    pub(super) fn new(mut sample: Vec<f32>, concepts: usize) -> UnitAcc {
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
            bands: Bands::new(),
        }
    }

    /// Adds one unit's activations over a chunk of rows.
    pub(super) fn add(&mut self, acts: &[f32], masks: &[u128], addr: &[RowAddr], k: usize) {
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
            if fires {
                self.bands.add(a, self.max, ad, m);
            }
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
    pub(super) fn finish(&mut self, counts: &[u64], n: u64) {
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

    /// Rows where the unit is not 0.
    pub(super) fn nonzero(&self) -> u64 {
        self.nonzero
    }

    pub(super) fn scores(&self, c: usize, count: u64, n: u64) -> Scores {
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
    pub(super) fn z(&self, diff: f64, n1: u64, n2: u64, n: u64) -> f64 {
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

/// Tokens per concept and per pair of concepts over the scored tokens.
pub(super) struct Cooccurrence {
    nc: usize,
    /// `counts[c]`: tokens carrying c.
    pub(super) counts: Vec<u64>,
    /// `pair[c * nc + e]`: tokens carrying both c and e.
    pair: Vec<u64>,
}

impl Cooccurrence {
    pub(super) fn new(nc: usize) -> Cooccurrence {
        Cooccurrence {
            nc,
            counts: vec![0; nc],
            pair: vec![0; nc * nc],
        }
    }

    /// Counts the concept sets of a chunk of rows.
    pub(super) fn add(&mut self, masks: &[u128]) {
        let nc = self.nc;
        for &bits in masks {
            let mut b = bits;
            while b != 0 {
                let c = b.trailing_zeros() as usize;
                b &= b - 1;
                self.counts[c] += 1;
                let mut o = bits;
                while o != 0 {
                    let e = o.trailing_zeros() as usize;
                    o &= o - 1;
                    self.pair[c * nc + e] += 1;
                }
            }
        }
    }

    /// Concept c lies inside concept p when p is the larger and carries at least
    /// `related_overlap` of c's tokens (ties broken by index, so never both ways).
    pub(super) fn inside(&self, c: usize, p: usize, related_overlap: f64) -> bool {
        let (counts, nc) = (&self.counts, self.nc);
        c != p
            && counts[c] > 0
            && (counts[p], p) > (counts[c], c)
            && self.pair[c * nc + p] as f64 / counts[c] as f64 >= related_overlap
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
}
