//! The loader's windows (see [`super::loader`] for the stream they make): the read plan, the
//! decoding of one window, and the background thread that produces them in stream order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use rayon::prelude::*;

use super::error::{Result, StoreError};
use super::reader::{HookRows, ShardReader};
use super::schema::HookInfo;
use super::shuffle::{mix, permutation};

/// One (shard, row group) read unit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unit {
    pub(super) reader: usize,
    pub(super) row_group: usize,
    pub(super) rows: usize,
}

/// Everything the background thread needs to build windows.
pub(super) struct Plan {
    pub(super) readers: Vec<ShardReader>,
    pub(super) units: Vec<Unit>,
    pub(super) hook: HookInfo,
    pub(super) include_special: bool,
    pub(super) seed: u64,
    pub(super) shuffle_buffer: usize,
    pub(super) shuffled: bool,
}

/// Decoded rows of one window, in the order they are emitted: row `i` is row `order[i]` of the
/// concatenated parts (file order when `order` is None). Rows are gathered lazily, straight into
/// the batches, so a window is never copied as a whole.
pub(super) struct Window {
    pub(super) epoch: u64,
    pub(super) index: u64,
    pub(super) last_in_epoch: bool,
    pub(super) rows: usize,
    pub(super) d: usize,
    /// Decoded rows of each non-empty unit, `rows_i × d`.
    pub(super) parts: Vec<Vec<f32>>,
    /// First row (in the concatenation) of each part.
    pub(super) starts: Vec<usize>,
    pub(super) order: Option<Vec<u32>>,
    /// Rows dropped for NaN/Inf while reading it (`skip_nonfinite`).
    pub(super) dropped: u64,
}

impl Window {
    /// The values of emitted row `i`.
    pub(super) fn row(&self, i: usize) -> &[f32] {
        let src = self.order.as_ref().map_or(i, |o| o[i] as usize);
        let part = self.starts.partition_point(|&s| s <= src) - 1;
        let local = src - self.starts[part];
        &self.parts[part][local * self.d..(local + 1) * self.d]
    }
}

/// Tags that keep the epoch and window seed streams apart.
const EPOCH_TAG: u64 = 0x65706f6368; // "epoch"
const WINDOW_TAG: u64 = 0x77696e646f77; // "window"

impl Plan {
    /// The units of each window of `epoch`, in stream order.
    fn windows(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order: Vec<usize> = if self.shuffled {
            permutation(self.units.len(), mix(&[self.seed, EPOCH_TAG, epoch]))
        } else {
            (0..self.units.len()).collect()
        };
        let mut windows = vec![];
        let mut current = vec![];
        let mut rows = 0;
        for u in order {
            current.push(u);
            rows += self.units[u].rows;
            if rows >= self.shuffle_buffer {
                windows.push(std::mem::take(&mut current));
                rows = 0;
            }
        }
        if !current.is_empty() {
            windows.push(current);
        }
        windows
    }

    /// Decodes a window's units in parallel and draws its row order.
    fn build_window(&self, epoch: u64, index: u64, units: &[usize], last: bool) -> Result<Window> {
        let reads: Vec<HookRows> = units
            .par_iter()
            .map(|&u| {
                let unit = self.units[u];
                let reader = &self.readers[unit.reader];
                reader.read_hook(&self.hook, unit.row_group, self.include_special)
            })
            .collect::<Result<_>>()?;
        let dropped = reads.iter().map(|r| r.dropped as u64).sum();
        let mut parts: Vec<Vec<f32>> = reads.into_iter().map(|r| r.values).collect();
        // Empty parts (all-special row groups) would break the row lookup.
        parts.retain(|p| !p.is_empty());
        let d = self.hook.d;
        let mut starts = Vec::with_capacity(parts.len());
        let mut rows = 0;
        for p in &parts {
            starts.push(rows);
            rows += p.len() / d;
        }
        let order = self.shuffled.then(|| {
            let seed = mix(&[self.seed, WINDOW_TAG, epoch, index]);
            permutation(rows, seed)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        });
        Ok(Window {
            epoch,
            index,
            last_in_epoch: last,
            rows,
            d,
            parts,
            starts,
            order,
            dropped,
        })
    }
}

/// The background producer: windows from (epoch, window) on, in stream order, until the
/// receiver hangs up, a single pass ends, or an error (which is sent, then the thread ends).
pub(super) fn produce(
    plan: Arc<Plan>,
    start: (u64, u64),
    tx: SyncSender<Result<Window>>,
    stop: Arc<AtomicBool>,
) {
    let (mut epoch, mut window) = start;
    loop {
        if !plan.shuffled && epoch > 0 {
            return; // a single pass has one epoch
        }
        let windows = plan.windows(epoch);
        if window as usize > windows.len() {
            let _ = tx.send(Err(StoreError::Loader(format!(
                "the saved position (epoch {epoch}, window {window}) is past the {} windows of \
                 an epoch; it was saved by a loader over different data",
                windows.len()
            ))));
            return;
        }
        let full_epoch = window == 0;
        let mut epoch_rows = 0;
        for (w, units) in windows.iter().enumerate().skip(window as usize) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let last = w + 1 == windows.len();
            let result = plan.build_window(epoch, w as u64, units, last);
            let failed = result.is_err();
            epoch_rows += result.as_ref().map_or(0, |win| win.rows);
            if tx.send(result).is_err() || failed {
                return;
            }
        }
        // An epoch without rows would make a shuffled loader spin forever.
        if plan.shuffled && full_epoch && epoch_rows == 0 {
            let _ = tx.send(Err(StoreError::Loader(format!(
                "hook {}: the selected shards hold no rows to load (all special, or empty)",
                plan.hook.name
            ))));
            return;
        }
        epoch += 1;
        window = 0;
    }
}
