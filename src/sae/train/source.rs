//! Where a run's rows come from: a dataset's shards (the shuffled loader), or a row generator
//! streamed by index (`unravel train --synth`: no shard is written).
//!
//! A [`RowSource`] is a pure function of the row index: row `i` is the same whoever asks, in
//! whatever batch. So a streamed run needs no loader state beyond the next index (kept in the
//! checkpoint's `LoaderState::rows_emitted`), and resumes exactly. Training reads indices
//! `0, 1, 2, ...`; evaluations read the disjoint range from [`HELD_OUT_START`] on, which training
//! can never reach.

use std::sync::Arc;

use crate::sae::{Result, SaeError};
use crate::store::{Dataset, Loader, LoaderState};

/// A generator of rows by index (the library's synthetic generators implement it; the CLI wires
/// them in, as `sae` sits below `synth`).
pub trait RowSource: Send + Sync {
    /// Values per row.
    fn d(&self) -> usize;
    /// Rows `start .. start + n`, `[n, d]` row-major.
    fn rows(&self, start: u64, n: usize) -> Vec<f32>;
    /// Identifies the generator (its spec and seed): a resumed run must see the same one.
    fn fingerprint(&self) -> String;
    /// One line naming it, for the split note ("SynthSAEBench-16k, 16384 features in 768 dims").
    fn describe(&self) -> String;
}

/// First row index of the held-out range of a streamed run (2^62: no run trains that far).
pub const HELD_OUT_START: u64 = 1 << 62;

/// The run's input: a dataset, or a streamed generator. (One per run: boxing the larger variant
/// would buy nothing.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Input {
    Store(Dataset),
    Stream(Arc<dyn RowSource>),
}

impl Input {
    /// The stored dataset (None when streamed).
    pub(super) fn dataset(&self) -> Option<&Dataset> {
        match self {
            Input::Store(d) => Some(d),
            Input::Stream(_) => None,
        }
    }
}

/// The training batches: the dataset's shuffled loader, or the generator's rows in index order.
/// (One per run: boxing the larger variant would buy nothing.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Batches {
    Store(Loader),
    Stream {
        source: Arc<dyn RowSource>,
        next: u64,
        batch: usize,
    },
}

impl Batches {
    /// A stream from row `next` on (0 for a new run; the checkpoint's position on resume), after
    /// checking that a saved position belongs to this generator.
    pub(super) fn stream(
        source: Arc<dyn RowSource>,
        batch: usize,
        saved: Option<&LoaderState>,
    ) -> Result<Batches> {
        let next = match saved {
            Some(s) if s.fingerprint != stream_fingerprint(source.as_ref()) => {
                return Err(SaeError::Config(format!(
                    "the checkpoint was trained on another generator (fingerprint {}, this one {}); \
                     resume with the original --synth spec",
                    s.fingerprint,
                    stream_fingerprint(source.as_ref())
                )))
            }
            Some(s) => s.rows_emitted,
            None => 0,
        };
        Ok(Batches::Stream {
            source,
            next,
            batch,
        })
    }

    /// The next batch `(values [rows × d], rows)`; a stream never ends.
    pub(super) fn next_rows(&mut self) -> Result<Option<(Vec<f32>, usize)>> {
        match self {
            Batches::Store(l) => Ok(l.next_rows()?),
            Batches::Stream {
                source,
                next,
                batch,
            } => {
                let x = source.rows(*next, *batch);
                *next += *batch as u64;
                Ok(Some((x, *batch)))
            }
        }
    }

    /// The position after the last batch, saved in checkpoints.
    pub(super) fn state(&self) -> LoaderState {
        match self {
            Batches::Store(l) => l.state(),
            Batches::Stream { source, next, .. } => LoaderState {
                epoch: 0,
                window: 0,
                offset: 0,
                rows_emitted: *next,
                fingerprint: stream_fingerprint(source.as_ref()),
            },
        }
    }

    /// Rows dropped for NaN/Inf (a generator drops none).
    pub(super) fn rows_dropped(&self) -> u64 {
        match self {
            Batches::Store(l) => l.rows_dropped(),
            Batches::Stream { .. } => 0,
        }
    }
}

/// The loader fingerprint of a stream: the generator's, marked as a stream.
pub(super) fn stream_fingerprint(source: &dyn RowSource) -> String {
    format!("stream:{}", source.fingerprint())
}

/// Up to `tokens` held-out rows of a stream, in index order, in batches of `batch`, passed to
/// `each` as `(values, rows)`.
pub(super) fn held_out_batches(
    source: &dyn RowSource,
    tokens: u64,
    batch: usize,
    each: &mut dyn FnMut(Vec<f32>, usize) -> Result<()>,
) -> Result<()> {
    let mut done = 0u64;
    while done < tokens {
        let n = (batch as u64).min(tokens - done) as usize;
        each(source.rows(HELD_OUT_START + done, n), n)?;
        done += n as u64;
    }
    Ok(())
}
