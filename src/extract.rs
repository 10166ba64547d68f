//! `unravel extract`: corpus → packed contexts → hooked forward → parquet shards + manifest.
//!
//! Three stages run at once, joined by bounded channels so memory stays bounded by the batch and
//! shard size, not the corpus:
//!
//! ```text
//! packer thread (read, tokenize, pack, --part filter)
//!     ─▶ forward workers (one per CPU thread, each on its own contexts; one on a GPU)
//!     ─▶ main thread (puts the batches back in order, progress)
//!     ─▶ writer thread (f16/bf16 conversion, parquet + zstd, sha256, atomic rename, manifest)
//! ```
//!
//! Context ids are global (the same corpus and settings give the same ids on every machine);
//! `--part i/N` keeps the contexts with `id % N == i - 1`. A resumed run starts at the manifest's
//! `next_context_id`, so it ends with exactly the rows of an uninterrupted run.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{DType, Tensor};
use sha2::{Digest, Sha256};

use crate::corpus::{
    part_owns, BosPolicy, Context, Corpus, CorpusError, CorpusOptions, PackOptions, PackStats,
    Packer, TokenText,
};
use crate::models::hooks::HookSet;
use crate::models::load::ModelFiles;
use crate::models::{split, Arch, Model};
use crate::store::{
    self, Bos, ContextBatch, CorpusInfo, DatasetWriter, HookInfo, Manifest, ModelInfo, Part,
    StorageDtype, StoreError, WriterOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model forward failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{flag}: {reason}")]
    BadOption { flag: &'static str, reason: String },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("corpus `{0}` produced no tokens (every document is empty, or shorter than one context); give it more text or a smaller --ctx")]
    NoTokens(String),
    #[error("{0} thread stopped unexpectedly")]
    Thread(&'static str),
}

/// Everything `extract` needs besides the model.
#[derive(Clone, Debug)]
pub struct ExtractPlan {
    pub corpus: PathBuf,
    pub corpus_options: CorpusOptions,
    pub hooks: HookSet,
    pub ctx: usize,
    /// `None` picks the model's default (GPT-2: endoftext, encoders: cls-sep).
    pub bos: Option<BosPolicy>,
    pub max_tokens: Option<u64>,
    pub store_dtype: StorageDtype,
    /// Contexts per forward pass.
    pub batch: usize,
    /// Rows per shard (a shard closes after the batch that reaches it).
    pub shard_tokens: usize,
    /// zstd level of the shards; 0 stores them uncompressed.
    pub zstd_level: i32,
    pub out: PathBuf,
    pub resume: bool,
    /// 1-based (index, count).
    pub part: Option<(usize, usize)>,
}

/// Progress after each stored batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Rows (tokens, specials included) stored by this run and earlier runs of the same dataset.
    pub rows: u64,
    /// Rows this part will store in all, when known (`--max-tokens`).
    pub total_rows: Option<u64>,
}

/// What a finished run did.
#[derive(Clone, Debug)]
pub struct ExtractReport {
    pub manifest: Manifest,
    /// Rows stored by this run: text tokens and the BOS / separator tokens the packer placed.
    pub rows_this_run: u64,
    /// Text (non-special) tokens stored by this run: the dataset's `totals.tokens` grew by this.
    pub tokens_this_run: u64,
    /// Wall time of the whole run.
    pub seconds: f64,
    pub pack: PackStats,
    /// Busy time of each stage (they overlap; the forward should dominate).
    pub timings: StageTimings,
}

/// Seconds each pipeline stage spent working (not waiting on its queues).
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimings {
    /// Reading, tokenizing and packing.
    pub pack: f64,
    /// Model forward and copying hook values out.
    pub forward: f64,
    /// Building rows, f16/bf16 conversion, parquet encoding, zstd, sha256, manifest saves.
    pub write: f64,
    /// CPU time of that writing: the writer thread's own plus its encoding jobs on rayon's pool.
    /// Unlike `write` (wall time inside the writer), it does not grow when the writer waits for
    /// a core the forward pass holds.
    pub write_cpu: f64,
}

/// The BOS policy a model uses when the user does not choose one.
pub fn default_bos(arch: Arch) -> BosPolicy {
    if arch.is_causal() {
        BosPolicy::EndOfText
    } else {
        BosPolicy::ClsSep
    }
}

/// Runs an extraction. `progress` is called after each batch is handed to the writer.
/// A fresh run that fails before storing any shard removes its manifest again, so fixing the
/// input and re-running the same command just works.
pub fn run(
    model: &Model,
    files: &ModelFiles,
    tokenizer_json: &Path,
    random_seed: Option<u64>,
    plan: &ExtractPlan,
    progress: impl FnMut(Progress),
) -> Result<ExtractReport, ExtractError> {
    let existed = std::fs::read_dir(&plan.out).is_ok_and(|d| {
        d.flatten()
            .any(|e| !crate::folder_lock::is_lock_file(&e.file_name()))
    });
    let result = run_inner(model, files, tokenizer_json, random_seed, plan, progress);
    if result.is_err() && !plan.resume && !existed {
        let nothing_stored = Manifest::load(&plan.out).is_ok_and(|m| m.shards.is_empty())
            || !plan.out.join(crate::store::MANIFEST_FILE).exists();
        if nothing_stored {
            // Only files this run made: the folder was empty or absent before.
            let _ = std::fs::remove_dir_all(&plan.out);
        }
    }
    result
}

fn run_inner(
    model: &Model,
    files: &ModelFiles,
    tokenizer_json: &Path,
    random_seed: Option<u64>,
    plan: &ExtractPlan,
    mut progress: impl FnMut(Progress),
) -> Result<ExtractReport, ExtractError> {
    let t0 = Instant::now();
    let bos = plan.bos.unwrap_or_else(|| default_bos(model.arch()));
    check_bos(model.arch(), bos)?;
    check_sizes(plan)?;
    PackOptions {
        ctx: plan.ctx,
        bos,
        max_tokens: plan.max_tokens,
        start_context_id: 0,
    }
    .validate()?;
    if plan.ctx > model.max_positions() {
        return Err(ExtractError::BadOption {
            flag: "--ctx",
            reason: format!(
                "{} is longer than the model's {} positions",
                plan.ctx,
                model.max_positions()
            ),
        });
    }
    let corpus = Corpus::open(&plan.corpus, &plan.corpus_options)?;
    let header = header_manifest(
        model,
        files,
        tokenizer_json,
        random_seed,
        plan,
        bos,
        &corpus,
    )?;
    let options = WriterOptions {
        shard_rows: plan.shard_tokens.max(plan.ctx),
        zstd_level: plan.zstd_level,
        ..WriterOptions::default()
    };
    let out_manifest = plan.out.join(header.file_name());
    let writer = if plan.resume && out_manifest.exists() {
        DatasetWriter::resume(&plan.out, &header, options)?
    } else if out_manifest.exists() {
        return Err(ExtractError::BadOption {
            flag: "--out",
            reason: format!(
                "{} already holds a dataset; pass --resume to continue it, or choose another folder",
                plan.out.display()
            ),
        });
    } else {
        DatasetWriter::create(&plan.out, header, options)?
    };
    let rows_before = writer.manifest().totals.rows;
    let tokens_before = writer.manifest().totals.tokens;
    if writer.manifest().complete {
        return Ok(ExtractReport {
            manifest: writer.manifest().clone(),
            rows_this_run: 0,
            tokens_this_run: 0,
            seconds: t0.elapsed().as_secs_f64(),
            pack: PackStats::default(),
            timings: StageTimings::default(),
        });
    }
    let pack_options = PackOptions {
        ctx: plan.ctx,
        bos,
        max_tokens: plan.max_tokens,
        start_context_id: writer.next_context_id(),
    };
    pack_options.validate()?;
    let total_rows = pack_options.max_contexts().map(|n| {
        let owned = match plan.part {
            Some((i, count)) => (0..n).filter(|&id| part_owns(id, (i, count))).count() as u64,
            None => n,
        };
        owned * plan.ctx as u64
    });

    let packer = Packer::new(corpus.documents(), tokenizer_json, pack_options)?;
    let token_text = TokenText::new(packer.tokenizer().clone());
    let (ctx_tx, ctx_rx) = sync_channel::<Vec<Context>>(4);
    let (out_tx, out_rx) = sync_channel::<Forwarded>(2);
    let part = plan.part;
    let batch = plan.batch;

    let packer_thread = std::thread::spawn(move || pack_batches(packer, part, batch, ctx_tx));
    let writer_thread = std::thread::spawn(move || write_batches(writer, token_text, out_rx));

    let forward_result = forward_batches(
        model,
        &plan.hooks,
        ctx_rx,
        &out_tx,
        rows_before,
        total_rows,
        &mut progress,
    );
    drop(out_tx);
    let pack = packer_thread
        .join()
        .map_err(|_| ExtractError::Thread("packer"))?;
    let written = writer_thread
        .join()
        .map_err(|_| ExtractError::Thread("writer"))?;
    // The writer's error explains a closed channel better than the forward's.
    let (mut writer, write_secs, write_cpu) = written?;
    let forward_secs = forward_result?;
    let (pack, pack_secs) = pack?;
    if writer.manifest().totals.rows == 0 && pack.tokens == 0 {
        return Err(ExtractError::NoTokens(plan.corpus.display().to_string()));
    }
    let m = writer.manifest_mut();
    m.corpus.documents = pack.documents;
    m.corpus.empty_documents = pack.empty_skipped;
    let t_finish = Instant::now();
    let (cpu_finish, encode_finish) = (store::thread_cpu_secs(), store::encode_cpu_secs());
    let manifest = writer.finish()?;
    let write_cpu = write_cpu
        + (store::thread_cpu_secs() - cpu_finish)
        + (store::encode_cpu_secs() - encode_finish);
    let rows_this_run = manifest.totals.rows - rows_before;
    let tokens_this_run = manifest.totals.tokens - tokens_before;
    Ok(ExtractReport {
        manifest,
        rows_this_run,
        tokens_this_run,
        seconds: t0.elapsed().as_secs_f64(),
        pack,
        timings: StageTimings {
            pack: pack_secs,
            forward: forward_secs,
            write: write_secs + t_finish.elapsed().as_secs_f64(),
            write_cpu,
        },
    })
}

/// Refuses batch and shard sizes of 0 (a batch of no context would never end).
fn check_sizes(plan: &ExtractPlan) -> Result<(), ExtractError> {
    if plan.batch == 0 {
        return Err(ExtractError::BadOption {
            flag: "--batch",
            reason: "is 0; give the number of contexts per forward pass (1 or more; default 8)"
                .into(),
        });
    }
    if plan.shard_tokens == 0 {
        return Err(ExtractError::BadOption {
            flag: "--shard-tokens",
            reason: "is 0; give the rows per shard (1 or more; default 65536)".into(),
        });
    }
    Ok(())
}

fn check_bos(arch: Arch, bos: BosPolicy) -> Result<(), ExtractError> {
    let ok = match bos {
        BosPolicy::ClsSep => !arch.is_causal(),
        BosPolicy::EndOfText | BosPolicy::None => arch.is_causal(),
    };
    if ok {
        Ok(())
    } else {
        Err(ExtractError::BadOption {
            flag: "--bos",
            reason: format!("`{}` does not fit a {} model", bos.name(), arch.name()),
        })
    }
}

/// The manifest header of this run: what the data is and how it was made.
fn header_manifest(
    model: &Model,
    files: &ModelFiles,
    tokenizer_json: &Path,
    random_seed: Option<u64>,
    plan: &ExtractPlan,
    bos: BosPolicy,
    corpus: &Corpus,
) -> Result<Manifest, ExtractError> {
    let info = ModelInfo {
        id: files.id.clone(),
        revision: files.revision.clone(),
        arch: model.arch().name().into(),
        config_sha256: sha256_file(&files.config)?,
        // Hashing multi-GB weights costs seconds; the config, tokenizer and revision pin the model.
        weights_sha256: None,
        random_weights: random_seed.is_some(),
        seed: random_seed,
    };
    let hooks = plan
        .hooks
        .iter()
        .map(|p| HookInfo {
            name: p.name(),
            d: model.hook_dim(p),
            dtype: plan.store_dtype,
        })
        .collect();
    let corpus_info = CorpusInfo {
        sources: corpus
            .sources()
            .iter()
            .map(|s| s.path.display().to_string())
            .collect(),
        sha256: corpus.sha256().into(),
        format: corpus.format().name().into(),
        text_field: Some(plan.corpus_options.text_field.clone()),
        documents: 0,
        empty_documents: 0,
    };
    let bos = match bos {
        BosPolicy::EndOfText => Bos::EndOfText,
        BosPolicy::None => Bos::None,
        BosPolicy::ClsSep => Bos::ClsSep,
    };
    let mut m = Manifest::new(
        info,
        sha256_file(tokenizer_json)?,
        hooks,
        plan.ctx,
        bos,
        corpus_info,
    );
    m.label_columns = plan
        .corpus_options
        .label_fields
        .iter()
        .map(|f| format!("label.{f}"))
        .collect();
    m.max_tokens = plan.max_tokens;
    if let Some((i, n)) = plan.part {
        m.part = Some(
            Part::new(i as u32, n as u32).map_err(|reason| ExtractError::BadOption {
                flag: "--part",
                reason,
            })?,
        );
    }
    Ok(m)
}

fn sha256_file(path: &Path) -> Result<String, ExtractError> {
    let bytes = std::fs::read(path).map_err(|e| ExtractError::Io {
        path: path.into(),
        reason: e.to_string(),
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Packer thread: groups this part's contexts into batches.
fn pack_batches(
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
type Forwarded = Vec<ForwardedPart>;

/// Some consecutive contexts and, per hook, their `rows × d` f32 values.
struct ForwardedPart {
    contexts: Vec<Context>,
    /// One contiguous f32 CPU tensor per hook: the writer reads them in place (no copy).
    hooks: Vec<Tensor>,
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
fn forward_batches(
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
fn write_batches(
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
