//! [`run`]: an extraction from start to end. Checks the plan, opens the corpus and the dataset
//! writer, starts the packer and writer threads, runs the forward stage on this thread (see
//! [`super::threads`]), and reports what was stored and where the time went.

use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use super::columns::write_batches;
use super::plan::{self, default_bos, ExtractPlan};
use super::threads::{forward_batches, pack_batches, Forwarded, Progress};
use super::ExtractError;
use crate::corpus::{part_owns, Context, Corpus, PackOptions, PackStats, Packer, TokenText};
use crate::models::load::ModelFiles;
use crate::models::Model;
use crate::store::{self, DatasetWriter, Manifest, WriterOptions};

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
            || !crate::store::manifest_path(&plan.out).exists();
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
    plan::check(plan, model, bos)?;
    let corpus = Corpus::open(&plan.corpus, &plan.corpus_options)?;
    let header = plan::header_manifest(
        model,
        files,
        tokenizer_json,
        random_seed,
        plan,
        bos,
        &corpus,
    )?;
    let writer = open_writer(plan, header)?;
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
    let stages = run_stages(
        model,
        plan,
        packer,
        writer,
        rows_before,
        total_rows,
        &mut progress,
    )?;
    let (mut writer, pack) = (stages.writer, stages.pack);
    if writer.manifest().totals.rows == 0 && pack.tokens == 0 {
        return Err(ExtractError::NoTokens(plan.corpus.display().to_string()));
    }
    let m = writer.manifest_mut();
    m.corpus.documents = pack.documents;
    m.corpus.empty_documents = pack.empty_skipped;
    let t_finish = Instant::now();
    let (cpu_finish, encode_finish) = (store::thread_cpu_secs(), store::encode_cpu_secs());
    let manifest = writer.finish()?;
    let write_cpu = stages.write_cpu
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
            pack: stages.pack_secs,
            forward: stages.forward_secs,
            write: stages.write_secs + t_finish.elapsed().as_secs_f64(),
            write_cpu,
        },
    })
}

/// What the stages hand back: the writer (to finish), the packer's counts, busy seconds.
struct Stages {
    writer: DatasetWriter,
    pack: PackStats,
    pack_secs: f64,
    forward_secs: f64,
    write_secs: f64,
    write_cpu: f64,
}

/// Runs the three stages at once: the packer and writer threads, and the forward stage on this
/// thread. Errors are reported in the order that explains them best (writer, forward, packer).
fn run_stages(
    model: &Model,
    plan: &ExtractPlan,
    packer: Packer,
    writer: DatasetWriter,
    rows_before: u64,
    total_rows: Option<u64>,
    progress: &mut impl FnMut(Progress),
) -> Result<Stages, ExtractError> {
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
        progress,
    );
    drop(out_tx);
    let pack = packer_thread
        .join()
        .map_err(|_| ExtractError::Thread("packer"))?;
    let written = writer_thread
        .join()
        .map_err(|_| ExtractError::Thread("writer"))?;
    // The writer's error explains a closed channel better than the forward's.
    let (writer, write_secs, write_cpu) = written?;
    let forward_secs = forward_result?;
    let (pack, pack_secs) = pack?;
    Ok(Stages {
        writer,
        pack,
        pack_secs,
        forward_secs,
        write_secs,
        write_cpu,
    })
}

/// The dataset writer of `--out`: a new dataset, or the one there continued with `--resume`.
fn open_writer(plan: &ExtractPlan, header: Manifest) -> Result<DatasetWriter, ExtractError> {
    let options = WriterOptions {
        shard_rows: plan.shard_tokens.max(plan.ctx),
        zstd_level: plan.zstd_level,
        ..WriterOptions::default()
    };
    let out_manifest = header.existing_file(&plan.out);
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
    Ok(writer)
}
