//! What a unit's dashboard needs beyond its scores, gathered in the audit's first pass at a cost
//! independent of the number of tokens: a histogram of its positive activations on a log2 grid,
//! and samples of the tokens in bands of its maximum (50–75%, 75–90%).
//!
//! The maximum is only known at the end, so the samples are kept per fine bucket of the value
//! (8 per octave, read off the float's bits) from half the running maximum up: a bucket keeps the
//! `PER_BUCKET` tokens with the smallest hash of their address, a bottom-k sketch, so the sample
//! is uniform within a bucket and (but for the bucket holding half the maximum) does not depend
//! on the order or chunking of the rows.

use crate::analysis::blocks::RowAddr;

/// Histogram bins per octave and the octaves covered (2^-16 .. 2^16; values outside are
/// counted in the first or last bin).
const PER_OCTAVE: usize = 4;
const MIN_EXP: i32 = -16;
/// Bins of [`hist_bin`].
pub const HIST_BINS: usize = 32 * PER_OCTAVE;
/// Samples kept per sample bucket.
const PER_BUCKET: usize = 4;
/// The lowest fraction of the maximum any band reaches.
const FLOOR: f32 = 0.5;

/// The histogram bin of a positive activation: its octave and the top two bits of its mantissa.
pub fn hist_bin(a: f32) -> usize {
    let key = (a.to_bits() >> 21) as i64 - ((127 + MIN_EXP as i64) << 2);
    key.clamp(0, HIST_BINS as i64 - 1) as usize
}

/// The values bin `b` holds: `[lo, hi)`.
pub fn hist_edges(b: usize) -> (f32, f32) {
    let edge = |b: usize| {
        2f32.powi(MIN_EXP + (b / PER_OCTAVE) as i32)
            * (1.0 + (b % PER_OCTAVE) as f32 / PER_OCTAVE as f32)
    };
    (edge(b), edge(b + 1))
}

/// A sampled token.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    hash: u64,
    pub(super) value: f32,
    pub(super) addr: RowAddr,
    pub(super) concepts: u128,
}

/// The log2 histogram and the band samples of one unit.
pub(super) struct Bands {
    pub(super) hist: Vec<u32>,
    /// (bucket key, its samples); only buckets at or above `floor`.
    buckets: Vec<(u32, Vec<Sample>)>,
    floor: u32,
}

impl Bands {
    pub(super) fn new() -> Bands {
        Bands {
            hist: vec![0; HIST_BINS],
            buckets: vec![],
            floor: 0,
        }
    }

    /// Adds a positive activation `a`; `max` is the running maximum, `a` included.
    #[inline]
    pub(super) fn add(&mut self, a: f32, max: f32, addr: RowAddr, concepts: u128) {
        self.hist[hist_bin(a)] += 1;
        if a < FLOOR * max {
            return;
        }
        let floor = (FLOOR * max).to_bits() >> 20;
        if floor > self.floor {
            self.floor = floor;
            self.buckets.retain(|(k, _)| *k >= floor);
        }
        let key = a.to_bits() >> 20;
        let s = Sample {
            hash: addr_hash(addr),
            value: a,
            addr,
            concepts,
        };
        let bucket = match self.buckets.iter().position(|(k, _)| *k == key) {
            Some(i) => &mut self.buckets[i].1,
            None => {
                self.buckets.push((key, Vec::with_capacity(PER_BUCKET)));
                &mut self.buckets.last_mut().unwrap().1
            }
        };
        if bucket.len() < PER_BUCKET {
            bucket.push(s);
        } else {
            let (i, worst) = bucket
                .iter()
                .enumerate()
                .max_by_key(|(_, t)| t.hash)
                .map(|(i, t)| (i, t.hash))
                .unwrap_or((0, 0));
            if s.hash < worst {
                bucket[i] = s;
            }
        }
    }

    /// Up to `n` sampled tokens with `lo·max ≤ a < hi·max` (smallest hash first, so a uniform
    /// pick within each bucket), highest activation first.
    pub(super) fn band(&self, lo: f32, hi: f32, max: f32, n: usize) -> Vec<Sample> {
        let mut all: Vec<Sample> = self
            .buckets
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .filter(|s| s.value >= lo * max && s.value < hi * max)
            .collect();
        all.sort_by_key(|s| s.hash);
        all.truncate(n);
        all.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.addr.cmp(&b.addr)));
        all
    }
}

/// A fixed hash of a row address (splitmix64 of its fields).
fn addr_hash(a: RowAddr) -> u64 {
    let mut z = ((a.shard as u64) << 42 ^ (a.row_group as u64) << 21 ^ a.row as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(row: u32) -> RowAddr {
        RowAddr {
            shard: 0,
            row_group: row / 1000,
            row: row % 1000,
        }
    }

    #[test]
    fn histogram_bins_hold_their_values() {
        for &a in &[1e-3f32, 0.3, 1.0, 1.2, 1.26, 3.0, 77.0] {
            let (lo, hi) = hist_edges(hist_bin(a));
            assert!(lo <= a && a < hi, "{a} not in [{lo}, {hi})");
        }
        assert_eq!(hist_edges(hist_bin(1.0)), (1.0, 1.25));
        assert_eq!(hist_bin(1e-30), 0);
        assert_eq!(hist_bin(1e30), HIST_BINS - 1);
    }

    #[test]
    fn band_samples_lie_in_their_band_whatever_the_order() {
        // Values 0.01..10.0 in a shuffled order; the maximum arrives late.
        let mut rows: Vec<u32> = (1..=1000).collect();
        rows.sort_by_key(|&r| addr_hash(addr(r)));
        let run = |order: &[u32]| {
            let mut b = Bands::new();
            let mut max = 0f32;
            for &r in order {
                let a = r as f32 / 100.0;
                max = max.max(a);
                b.add(a, max, addr(r), 0);
            }
            (b.band(0.75, 0.9, max, 5), b.band(0.5, 0.75, max, 5), b.hist)
        };
        let (high, mid, hist) = run(&rows);
        assert_eq!(high.len(), 5);
        assert_eq!(mid.len(), 5);
        assert!(
            high.iter().all(|s| (7.5..9.0).contains(&s.value)),
            "{high:?}"
        );
        assert!(mid.iter().all(|s| (5.0..7.5).contains(&s.value)), "{mid:?}");
        assert!(high.windows(2).all(|w| w[0].value >= w[1].value));
        assert_eq!(hist.iter().map(|&c| c as u64).sum::<u64>(), 1000);
        // The same rows in ascending order give the same samples (bottom-k by address hash).
        let sorted: Vec<u32> = (1..=1000).collect();
        let (high2, mid2, _) = run(&sorted);
        let values = |v: &[Sample]| v.iter().map(|s| s.value).collect::<Vec<_>>();
        assert_eq!(values(&high), values(&high2));
        assert_eq!(values(&mid), values(&mid2));
    }
}
