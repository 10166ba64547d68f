//! The writer thread of an extraction: turns each forwarded batch into the per-row columns of a
//! [`ContextBatch`] (the hook values borrowed in place, not copied) and hands it to the dataset
//! writer.

use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::threads::Forwarded;
use super::ExtractError;
use crate::corpus::{Context, TokenText};
use crate::store::{self, ContextBatch, DatasetWriter};

/// The values of a contiguous f32 CPU tensor, borrowed from its storage.
fn cpu_f32_slice<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32], ExtractError> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, z))) => Ok(&v[a..z]),
        _ => Err(candle_core::Error::Msg(
            "hook values: expected a contiguous f32 CPU tensor".into(),
        )
        .into()),
    }
}

/// Writer thread: turns batches into shard rows.
pub(super) fn write_batches(
    mut writer: DatasetWriter,
    token_text: TokenText,
    rx: Receiver<Forwarded>,
) -> Result<(DatasetWriter, f64, f64), ExtractError> {
    let mut busy = 0.0;
    let (cpu0, encode0) = (store::thread_cpu_secs(), store::encode_cpu_secs());
    let n_labels = writer.manifest().label_columns.len();
    for parts in rx {
        let started = Instant::now();
        let columns: Vec<Columns> = parts
            .iter()
            .map(|p| Columns::new(&p.contexts, &token_text, n_labels))
            .collect();
        let guards: Vec<Vec<_>> = parts
            .iter()
            .map(|p| p.hooks.iter().map(|t| t.storage_and_layout()).collect())
            .collect();
        let hook_slices = guards
            .iter()
            .map(|g| {
                g.iter()
                    .map(|(storage, layout)| cpu_f32_slice(storage, layout))
                    .collect::<Result<Vec<&[f32]>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batches: Vec<ContextBatch> = columns
            .iter()
            .zip(&hook_slices)
            .map(|(c, hooks)| c.batch(hooks))
            .collect();
        writer.write_batches(&batches)?;
        busy += started.elapsed().as_secs_f64();
    }
    let cpu = (store::thread_cpu_secs() - cpu0) + (store::encode_cpu_secs() - encode0);
    Ok((writer, busy, cpu))
}

/// The per-row columns of some contexts, owned, for a [`ContextBatch`] to borrow.
struct Columns {
    context_ids: Vec<u64>,
    positions: Vec<u32>,
    token_ids: Vec<u32>,
    tokens: Vec<String>,
    special: Vec<bool>,
    labels: Vec<Vec<Option<String>>>,
}

impl Columns {
    fn new(contexts: &[Context], token_text: &TokenText, n_labels: usize) -> Self {
        let rows: usize = contexts.iter().map(|c| c.tokens.len()).sum();
        let mut c = Columns {
            context_ids: Vec::with_capacity(rows),
            positions: Vec::with_capacity(rows),
            token_ids: Vec::with_capacity(rows),
            tokens: Vec::with_capacity(rows),
            special: Vec::with_capacity(rows),
            labels: vec![Vec::with_capacity(rows); n_labels],
        };
        for ctx in contexts {
            for (pos, &tok) in ctx.tokens.iter().enumerate() {
                c.context_ids.push(ctx.id);
                c.positions.push(pos as u32);
                c.token_ids.push(tok);
                c.tokens.push(token_text.get(tok).to_string());
                c.special.push(ctx.special[pos]);
            }
            for (field, column) in c.labels.iter_mut().enumerate() {
                column.extend(ctx.label_column(field).map(|v| v.map(str::to_string)));
            }
        }
        c
    }

    fn batch<'a>(&'a self, hooks: &'a [&'a [f32]]) -> ContextBatch<'a> {
        ContextBatch {
            context_ids: &self.context_ids,
            positions: &self.positions,
            token_ids: &self.token_ids,
            tokens: &self.tokens,
            special: &self.special,
            labels: &self.labels,
            hooks,
        }
    }
}
