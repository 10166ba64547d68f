//! The threads of an extraction: the packer thread batches contexts; forward workers (one per
//! CPU thread, one on a GPU) each run a group of a batch on their own; this thread puts the
//! groups back in order and hands whole batches to the writer thread ([`super::columns`]).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{DType, Tensor};

use super::ExtractError;
use crate::corpus::{part_owns, Context, PackStats, Packer};
use crate::models::hooks::HookSet;
use crate::models::{split, Model};

/// Progress after each stored batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Rows (tokens, specials included) stored by this run and earlier runs of the same dataset.
    pub rows: u64,
    /// Rows this part will store in all, when known (`--max-tokens`).
    pub total_rows: Option<u64>,
}

/// Packer thread: groups this part's contexts into batches.
pub(super) fn pack_batches(
    packer: Packer,
    part: Option<(usize, usize)>,
    batch: usize,
    tx: SyncSender<Vec<Context>>,
) -> Result<(PackStats, f64), ExtractError> {
    let mut packer = packer;
    let mut pending = Vec::with_capacity(batch);
    let mut busy = 0.0;
    loop {
        let t = Instant::now();
        let next = packer.next();
        busy += t.elapsed().as_secs_f64();
        let Some(ctx) = next else { break };
        let ctx = ctx?;
        if part.is_some_and(|p| !part_owns(ctx.id, p)) {
            continue;
        }
        pending.push(ctx);
        if pending.len() == batch && tx.send(std::mem::take(&mut pending)).is_err() {
            return Ok((packer.stats(), busy)); // the consumer stopped; its error is reported
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(pending);
    }
    Ok((packer.stats(), busy))
}

/// One batch after the forward pass, as the consecutive groups of contexts the forward workers
/// ran: the writer takes them in order, so no copy joins them.
pub(super) type Forwarded = Vec<ForwardedPart>;

/// Some consecutive contexts and, per hook, their `rows × d` f32 values.
pub(super) struct ForwardedPart {
    pub(super) contexts: Vec<Context>,
    /// One contiguous f32 CPU tensor per hook: the writer reads them in place (no copy).
    pub(super) hooks: Vec<Tensor>,
}

/// Batches between the packer and the writer at once (dispatched, not yet handed on): enough
/// for a worker to run ahead while another is held up.
const IN_FLIGHT: usize = 3;

/// One forward worker's share of a batch: group `group` of `groups`.
struct Work {
    batch: u64,
    group: usize,
    groups: usize,
    contexts: Vec<Context>,
}

/// A worker's result for one [`Work`].
struct Done {
    batch: u64,
    group: usize,
    groups: usize,
    part: Result<ForwardedPart, ExtractError>,
}

/// Runs the model on the packer's batches and hands them, in order, to the writer. Returns the
/// forward workers' mean busy seconds.
///
/// On the CPU each forward thread is a worker that takes a group of a batch's consecutive
/// contexts (a batch is split in as many groups as threads) and runs it on its own. There is no
/// barrier between the workers: one that loses its core for a while to the writer or the packer
/// delays only its own group, while the other goes on with the next batch. (`Model::forward`
/// joins its threads after every batch; here that join left a core idle while the writer held
/// the other, ≈ 15% of extract's time.) This thread puts the groups back in order. At most
/// [`IN_FLIGHT`] batches are in the forward stage, so memory stays bounded.
pub(super) fn forward_batches(
    model: &Model,
    hooks: &HookSet,
    batches: Receiver<Vec<Context>>,
    tx: &SyncSender<Forwarded>,
    rows_before: u64,
    total_rows: Option<u64>,
    progress: &mut impl FnMut(Progress),
) -> Result<f64, ExtractError> {
    let workers = if model.device().is_cpu() {
        split::threads()
    } else {
        1
    };
    let (work_tx, work_rx) = sync_channel::<Work>(workers);
    // Shared by the workers alone: when the last one stops, the receiver goes and the
    // dispatcher's next send fails instead of waiting for room forever.
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = channel::<Done>();
    let (slot_tx, slot_rx) = sync_channel::<()>(IN_FLIGHT);
    std::thread::scope(|s| {
        s.spawn(move || dispatch(batches, work_tx, slot_tx, workers));
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (done_tx, work_rx) = (done_tx.clone(), Arc::clone(&work_rx));
                s.spawn(move || forward_worker(i, workers, model, hooks, work_rx, done_tx))
            })
            .collect();
        drop((done_tx, work_rx));
        // Returning (even early, on an error) drops the receivers, which stops the other stages.
        let collected = collect(done_rx, slot_rx, tx, rows_before, total_rows, progress);
        let busy: f64 = handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum();
        collected.map(|()| busy / workers as f64)
    })
}

/// Splits each batch into one group of consecutive contexts per worker.
fn dispatch(
    batches: Receiver<Vec<Context>>,
    work: SyncSender<Work>,
    slots: SyncSender<()>,
    workers: usize,
) {
    for (batch, contexts) in (0u64..).zip(batches) {
        if slots.send(()).is_err() {
            return;
        }
        let groups = split::groups(contexts.len(), workers.min(contexts.len()));
        let mut contexts = contexts.into_iter();
        for (group, &(_, len)) in groups.iter().enumerate() {
            let contexts = contexts.by_ref().take(len).collect();
            let item = Work {
                batch,
                group,
                groups: groups.len(),
                contexts,
            };
            if work.send(item).is_err() {
                return;
            }
        }
    }
}

/// Forward worker `i`: runs groups on its own thread until the work runs out. Returns its busy
/// seconds.
fn forward_worker(
    i: usize,
    workers: usize,
    model: &Model,
    hooks: &HookSet,
    work: Arc<Mutex<Receiver<Work>>>,
    done: Sender<Done>,
) -> f64 {
    let mut busy = 0.0;
    loop {
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return busy,
        };
        let Ok(Work {
            batch,
            group,
            groups,
            contexts,
        }) = next
        else {
            return busy;
        };
        let started = Instant::now();
        let run = || {
            std::panic::catch_unwind(AssertUnwindSafe(|| forward_group(model, hooks, &contexts)))
                .unwrap_or(Err(ExtractError::Thread("forward")))
        };
        let hooks = if workers > 1 {
            split::on_thread(i, run)
        } else {
            run()
        };
        busy += started.elapsed().as_secs_f64();
        let part = hooks.map(|hooks| ForwardedPart { contexts, hooks });
        let reply = Done {
            batch,
            group,
            groups,
            part,
        };
        if done.send(reply).is_err() {
            return busy;
        }
    }
}

/// The hooks' values for some contexts of equal length: one contiguous f32 CPU tensor per hook.
fn forward_group(
    model: &Model,
    hooks: &HookSet,
    contexts: &[Context],
) -> Result<Vec<Tensor>, ExtractError> {
    let t = contexts.first().map_or(0, |c| c.tokens.len());
    let ids: Vec<u32> = contexts
        .iter()
        .flat_map(|c| c.tokens.iter().copied())
        .collect();
    let ids = Tensor::from_vec(ids, (contexts.len(), t), &model.device())?;
    let mask = vec![vec![1u8; t]; contexts.len()];
    let out = model.forward(&ids, &mask, hooks, false)?;
    let values = out
        .hooks
        .iter()
        .map(|(_, v)| {
            v.to_dtype(DType::F32)?
                .to_device(&candle_core::Device::Cpu)?
                .flatten_all()?
                .contiguous()
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(values)
}

/// Puts the workers' groups back in batch order and hands each whole batch to the writer.
fn collect(
    done: Receiver<Done>,
    slots: Receiver<()>,
    tx: &SyncSender<Forwarded>,
    rows_before: u64,
    total_rows: Option<u64>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), ExtractError> {
    let mut waiting: BTreeMap<u64, Vec<Option<ForwardedPart>>> = BTreeMap::new();
    let (mut next, mut rows) = (0u64, rows_before);
    for d in done {
        let groups = waiting
            .entry(d.batch)
            .or_insert_with(|| (0..d.groups).map(|_| None).collect());
        if let Some(slot) = groups.get_mut(d.group) {
            *slot = Some(d.part?);
        }
        while waiting
            .get(&next)
            .is_some_and(|g| g.iter().all(Option::is_some))
        {
            let parts: Forwarded = waiting
                .remove(&next)
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            rows += parts
                .iter()
                .flat_map(|p| &p.contexts)
                .map(|c| c.tokens.len() as u64)
                .sum::<u64>();
            if tx.send(parts).is_err() {
                return Ok(()); // the writer stopped; its error is reported
            }
            let _ = slots.recv();
            progress(Progress { rows, total_rows });
            next += 1;
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(ExtractError::Thread("forward"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(id: u64) -> Context {
        Context {
            id,
            tokens: vec![1, 2],
            special: vec![true, false],
            doc: vec![None, Some(0)],
            labels: vec![],
        }
    }

    fn done(batch: u64, group: usize, ids: &[u64]) -> Done {
        let contexts = ids.iter().map(|&id| context(id)).collect();
        Done {
            batch,
            group,
            groups: 2,
            part: Ok(ForwardedPart {
                contexts,
                hooks: vec![],
            }),
        }
    }

    /// Groups that finish out of order reach the writer as whole batches in batch order, each
    /// freeing one in-flight slot, with progress counted in rows.
    #[test]
    fn groups_are_put_back_in_batch_order() {
        let (done_tx, done_rx) = channel();
        for d in [
            done(1, 1, &[6, 7]),
            done(0, 1, &[2, 3]),
            done(1, 0, &[4, 5]),
            done(0, 0, &[0, 1]),
        ] {
            done_tx.send(d).unwrap();
        }
        drop(done_tx);
        // Two batches dispatched, so two slots taken; each batch handed on frees one, so at
        // each progress report there is room for one more.
        let (slot_tx, slot_rx) = sync_channel(2);
        slot_tx.send(()).unwrap();
        slot_tx.send(()).unwrap();
        let (tx, rx) = sync_channel(4);
        let mut seen = vec![];
        let mut report = |p: Progress| seen.push((p.rows, slot_tx.try_send(()).is_ok()));
        collect(done_rx, slot_rx, &tx, 10, Some(26), &mut report).unwrap();
        drop(tx);
        let batches: Vec<Vec<u64>> = rx
            .iter()
            .map(|parts| {
                parts
                    .iter()
                    .flat_map(|p| &p.contexts)
                    .map(|c| c.id)
                    .collect()
            })
            .collect();
        assert_eq!(batches, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        assert_eq!(seen, vec![(18, true), (26, true)]);
    }

    /// A batch whose group never arrives (a worker stopped) is an error, not a silent gap.
    #[test]
    fn a_missing_group_is_an_error() {
        let (done_tx, done_rx) = channel();
        done_tx.send(done(0, 1, &[2, 3])).unwrap();
        drop(done_tx);
        let (_slot_tx, slot_rx) = sync_channel(IN_FLIGHT);
        let (tx, _rx) = sync_channel(4);
        let err = collect(done_rx, slot_rx, &tx, 0, None, &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "forward thread stopped unexpectedly");
    }
}
