//! The streaming batch loader: `[batch, d]` f32 tensors of one hook, shuffled deterministically,
//! with memory bounded by two windows whatever the dataset size, and an exactly resumable
//! position.
//!
//! The stream, for epoch e (shuffled mode):
//! 1. the (shard, row group) units of the chosen shards are permuted with a seed from (seed, e);
//! 2. consecutive units are grouped into windows of at least `shuffle_buffer` rows (by row count
//!    before filtering, so the grouping needs no decoding);
//! 3. window w's rows (special rows dropped) are permuted with a seed from (seed, e, w);
//! 4. the stream is the concatenation of all windows of all epochs, cut into batches.
//!
//! A position is (epoch, window, offset): resuming decodes that one window and skips `offset`
//! rows, and every later batch is bit-identical to an uninterrupted run's (whatever the batch
//! size, even). Single-pass mode reads units in file order without shuffling and ends.
//!
//! A background thread decodes the next window (row groups in parallel on rayon's global pool)
//! while the consumer drains the current one; it is at most one window ahead. Memory: two
//! decoded windows of about `shuffle_buffer × d × 4` bytes each, plus a batch. Call
//! `next_batch` from an ordinary thread, not from inside a rayon task (the decoder needs the
//! pool's threads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{Result, StoreError};
use super::reader::Dataset;
use super::window::{produce, Plan, Unit, Window};

/// Rows per shuffle window unless told otherwise (~200 MB of f32 for d = 768).
pub const DEFAULT_SHUFFLE_BUFFER: usize = 65_536;

/// Row orders are stored as u32; windows stay far below that.
const MAX_SHUFFLE_BUFFER: usize = 1 << 30;

/// Shuffled forever, or one ordered pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoaderMode {
    /// Deterministically shuffled, epoch after epoch, never ending (training).
    Shuffled,
    /// Every row once in file order, then the end (evaluation).
    SinglePass,
}

/// What to load; build with [`LoaderConfig::new`] and adjust the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// The hook (column) to load.
    pub hook: String,
    /// Rows per batch (the last batch of a single pass may be smaller).
    pub batch_size: usize,
    /// Shards to read (see [`Dataset::split`]); None: all.
    pub shards: Option<Vec<usize>>,
    /// Also emit special-token rows (default false).
    pub include_special: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Rows per shuffle window: the shuffle's quality and the loader's memory.
    pub shuffle_buffer: usize,
    /// Shuffled or single pass.
    pub mode: LoaderMode,
}

impl LoaderConfig {
    /// Shuffled batches of `hook` from all shards, special rows excluded, seed 0, default window.
    pub fn new(hook: impl Into<String>, batch_size: usize) -> Self {
        LoaderConfig {
            hook: hook.into(),
            batch_size,
            shards: None,
            include_special: false,
            seed: 0,
            shuffle_buffer: DEFAULT_SHUFFLE_BUFFER,
            mode: LoaderMode::Shuffled,
        }
    }
}

/// A loader's position in its stream: small, serialisable, and tied to its configuration and
/// shards by a fingerprint (a state is refused by a loader of a different configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Epoch of the next row.
    pub epoch: u64,
    /// Window (within the epoch) of the next row.
    pub window: u64,
    /// Rows of that window already emitted.
    pub offset: u64,
    /// Rows emitted since the loader first started.
    pub rows_emitted: u64,
    /// sha256 prefix over the hook, seed, window size, mode, filtering and shard hashes.
    pub fingerprint: String,
}

/// Streams `[batch, d]` f32 tensors of one hook; see the module docs. Iterate it, or call
/// [`Loader::next_batch`].
pub struct Loader {
    d: usize,
    batch_size: usize,
    device: Device,
    fingerprint: String,
    rows_per_epoch: u64,
    rx: Option<Receiver<Result<Window>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The window being drained and the rows of it already emitted.
    current: Option<Window>,
    offset: usize,
    /// Position before the first window arrives (from a resumed state).
    start: (u64, u64, u64),
    /// Rows to skip in the first window (resume).
    skip: Option<usize>,
    rows_emitted: u64,
    /// Rows dropped for NaN/Inf in the windows this loader has started to emit (not those
    /// read ahead).
    rows_dropped: u64,
    ended: bool,
}

impl Loader {
    /// A loader at the start of its stream.
    pub fn new(dataset: &Dataset, config: &LoaderConfig, device: &Device) -> Result<Loader> {
        Self::start(dataset, config, device, None)
    }

    /// A loader continuing exactly where `state` (from [`Loader::state`] of a loader with the
    /// same configuration over the same shards) left off.
    pub fn resume(
        dataset: &Dataset,
        config: &LoaderConfig,
        device: &Device,
        state: &LoaderState,
    ) -> Result<Loader> {
        Self::start(dataset, config, device, Some(state))
    }

    fn start(
        dataset: &Dataset,
        config: &LoaderConfig,
        device: &Device,
        state: Option<&LoaderState>,
    ) -> Result<Loader> {
        if config.batch_size == 0 {
            return Err(StoreError::Loader("batch_size must be at least 1".into()));
        }
        if config.shuffle_buffer > MAX_SHUFFLE_BUFFER {
            return Err(StoreError::Loader(format!(
                "shuffle_buffer {} is over the limit of {MAX_SHUFFLE_BUFFER} rows",
                config.shuffle_buffer
            )));
        }
        let hook = dataset.hook(&config.hook)?.clone();
        let shards = select_shards(dataset, config.shards.as_deref())?;
        let fingerprint = fingerprint(dataset, config, &shards);
        if let Some(s) = state.filter(|s| s.fingerprint != fingerprint) {
            return Err(StoreError::Loader(format!(
                "the saved loader position (fingerprint {}) belongs to a different hook, seed, \
                 shuffle buffer, shard selection or dataset (this loader: {fingerprint}); \
                 use the original settings",
                s.fingerprint
            )));
        }
        dataset.check_shards(&shards)?;
        let mut readers = Vec::with_capacity(shards.len());
        let mut units = vec![];
        let mut rows_per_epoch = 0u64;
        for (r, &shard) in shards.iter().enumerate() {
            let reader = dataset.shard_reader(shard)?;
            for (row_group, &rows) in reader.row_groups().iter().enumerate() {
                units.push(Unit {
                    reader: r,
                    row_group,
                    rows,
                });
            }
            let info = &dataset.manifest().shards[shard];
            rows_per_epoch += if config.include_special {
                info.rows
            } else {
                info.rows - info.special_rows
            };
            readers.push(reader);
        }
        let plan = Arc::new(Plan {
            readers,
            units,
            hook: hook.clone(),
            include_special: config.include_special,
            seed: config.seed,
            shuffle_buffer: config.shuffle_buffer.max(1),
            shuffled: config.mode == LoaderMode::Shuffled,
        });
        let start = state.map_or((0, 0, 0), |s| (s.epoch, s.window, s.offset));
        // Rendezvous channel: the producer holds at most one finished window until it is taken.
        let (tx, rx) = sync_channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("unravel-loader".into())
                .spawn(move || produce(plan, (start.0, start.1), tx, stop))
                .map_err(|e| StoreError::Loader(format!("cannot start the loader thread: {e}")))?
        };
        Ok(Loader {
            d: hook.d,
            batch_size: config.batch_size,
            device: device.clone(),
            fingerprint,
            rows_per_epoch,
            rx: Some(rx),
            stop,
            thread: Some(thread),
            current: None,
            offset: 0,
            start,
            skip: Some(start.2 as usize),
            rows_emitted: state.map_or(0, |s| s.rows_emitted),
            rows_dropped: 0,
            ended: false,
        })
    }

    /// Values per row.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Rows dropped for NaN/Inf (`skip_nonfinite`) in the windows emitted so far by this loader
    /// (since it started or resumed); rows of windows read ahead are not counted yet.
    pub fn rows_dropped(&self) -> u64 {
        self.rows_dropped
    }

    /// Rows one epoch emits (from the manifest).
    pub fn rows_per_epoch(&self) -> u64 {
        self.rows_per_epoch
    }

    /// The position after the last batch returned, for [`Loader::resume`].
    pub fn state(&self) -> LoaderState {
        let (epoch, window, offset) = match &self.current {
            Some(w) if self.offset < w.rows => (w.epoch, w.index, self.offset as u64),
            Some(w) if w.last_in_epoch => (w.epoch + 1, 0, 0),
            Some(w) => (w.epoch, w.index + 1, 0),
            None => self.start,
        };
        LoaderState {
            epoch,
            window,
            offset,
            rows_emitted: self.rows_emitted,
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// The next batch, or None at the end of a single pass.
    pub fn next_batch(&mut self) -> Result<Option<Tensor>> {
        match self.next_rows()? {
            Some((values, rows)) => Ok(Some(Tensor::from_vec(
                values,
                (rows, self.d),
                &self.device,
            )?)),
            None => Ok(None),
        }
    }

    /// The next batch on the host, `(values [rows × d], rows)`, or None at the end of a
    /// single pass (the same stream as [`Loader::next_batch`]).
    pub fn next_rows(&mut self) -> Result<Option<(Vec<f32>, usize)>> {
        let d = self.d;
        let mut out: Vec<f32> = Vec::with_capacity(self.batch_size * d);
        let mut rows = 0;
        while rows < self.batch_size {
            let available = self.current.as_ref().map_or(0, |w| w.rows - self.offset);
            if available == 0 {
                if !self.advance()? {
                    break;
                }
                continue;
            }
            let take = available.min(self.batch_size - rows);
            if let Some(w) = &self.current {
                for i in self.offset..self.offset + take {
                    out.extend_from_slice(w.row(i));
                }
            }
            self.offset += take;
            rows += take;
        }
        if rows == 0 {
            return Ok(None);
        }
        self.rows_emitted += rows as u64;
        Ok(Some((out, rows)))
    }

    /// Moves to the next window; false at the end of the stream.
    fn advance(&mut self) -> Result<bool> {
        if self.ended {
            return Ok(false);
        }
        if let Some(w) = self.current.take() {
            // Keep the position valid while waiting for the next window.
            self.start = if w.last_in_epoch {
                (w.epoch + 1, 0, 0)
            } else {
                (w.epoch, w.index + 1, 0)
            };
        }
        let received = match &self.rx {
            Some(rx) => rx.recv(),
            None => return Ok(false),
        };
        match received {
            Ok(Ok(window)) => {
                let skip = self.skip.take().unwrap_or(0);
                if skip > window.rows {
                    self.ended = true;
                    return Err(StoreError::Loader(format!(
                        "the saved position skips {skip} rows of a window of {}; it was saved by \
                         a loader over different data",
                        window.rows
                    )));
                }
                self.offset = skip;
                // A resumed window's drops were counted before the state was saved.
                if skip == 0 {
                    self.rows_dropped += window.dropped;
                }
                self.current = Some(window);
                Ok(true)
            }
            Ok(Err(e)) => {
                self.ended = true;
                Err(e)
            }
            Err(_) => {
                self.ended = true;
                Ok(false)
            }
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Tensor>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Hanging up unblocks a producer waiting to hand over a window.
        drop(self.rx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The chosen shards, sorted and deduplicated (order-independent, so the stream depends only on
/// the set), each checked to exist.
fn select_shards(dataset: &Dataset, shards: Option<&[usize]>) -> Result<Vec<usize>> {
    let n = dataset.shard_count();
    let mut chosen: Vec<usize> = match shards {
        Some(s) => s.to_vec(),
        None => (0..n).collect(),
    };
    chosen.sort_unstable();
    chosen.dedup();
    if let Some(bad) = chosen.iter().find(|&&s| s >= n) {
        return Err(StoreError::Loader(format!(
            "shard {bad} does not exist; the dataset in {} has {n} shards",
            dataset.dir().display()
        )));
    }
    if chosen.is_empty() {
        return Err(StoreError::Loader(format!(
            "no shards selected in {}",
            dataset.dir().display()
        )));
    }
    Ok(chosen)
}

/// Identifies the stream: everything that changes which rows come in which order.
fn fingerprint(dataset: &Dataset, config: &LoaderConfig, shards: &[usize]) -> String {
    let mut h = Sha256::new();
    h.update(config.hook.as_bytes());
    h.update(config.seed.to_le_bytes());
    h.update((config.shuffle_buffer as u64).to_le_bytes());
    h.update([config.include_special as u8, config.mode as u8]);
    for &s in shards {
        h.update(dataset.manifest().shards[s].sha256.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}
