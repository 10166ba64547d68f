//! The import loop: open each input in turn, check it agrees with the first one (hooks, widths,
//! context length), and hand its chunks of whole contexts to the store's [`DatasetWriter`].

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use super::columns::{self, BatchSource, HookColumn};
use super::files::{self, Kind};
use super::raw::{self, RawReader};
use super::{Chunk, ImportError, ImportOptions, SourceDtype};
use crate::store::{
    Bos, ContextBatch, CorpusInfo, DatasetWriter, HookInfo, Manifest, ModelInfo, StoreError,
};

/// Values per chunk (all hooks together): 4M f32 = 16 MB, whatever the input's size.
const CHUNK_VALUES: usize = 1 << 22;

/// The shape every input must share.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    names: Vec<String>,
    ds: Vec<usize>,
    ctx: usize,
    tokens: bool,
    dtypes: Vec<SourceDtype>,
}

/// One open input.
enum Stream {
    Raw(RawReader),
    Table {
        src: BatchSource,
        hooks: Vec<HookColumn>,
        token_col: Option<usize>,
        shape: (usize, Vec<usize>),
        pending: Option<RecordBatch>,
        records: u64,
    },
}

impl Stream {
    fn open(
        path: &Path,
        kind: Kind,
        opts: &ImportOptions,
    ) -> Result<(Stream, Layout), ImportError> {
        let key = match opts.columns.as_slice() {
            [] => None,
            [one] => Some(one.as_str()),
            _ if kind != Kind::Table => {
                return Err(ImportError::input(
                    path,
                    "holds one array per import; give a single --column",
                ))
            }
            _ => None,
        };
        let array = match kind {
            Kind::Npy => raw::npy(path, 0, None)?,
            Kind::Npz => raw::npz(path, key)?,
            Kind::Safetensors => raw::safetensors(path, key)?,
            Kind::Table => return Stream::open_table(path, opts),
        };
        let name = opts
            .hook
            .clone()
            .or_else(|| array.name.clone())
            .unwrap_or_else(|| "acts".into());
        let layout = Layout {
            names: vec![name],
            ds: vec![array.d()],
            ctx: array.ctx(),
            tokens: false,
            dtypes: vec![array.dtype],
        };
        Ok((Stream::Raw(RawReader::open(array)?), layout))
    }

    fn open_table(path: &Path, opts: &ImportOptions) -> Result<(Stream, Layout), ImportError> {
        // Records per batch: a nested column holds a whole context per record.
        let probe = BatchSource::open(path, 1)?;
        let hooks = columns::hook_columns(path, &probe.schema, &opts.columns)?;
        let batch_rows = if hooks.iter().any(|h| h.nested) {
            16
        } else {
            opts.writer.shard_rows.clamp(1, 2048)
        };
        let mut src = BatchSource::open(path, batch_rows)?;
        let token_col = columns::token_column(&src.schema);
        let first = src
            .next_batch()?
            .ok_or_else(|| ImportError::input(path, "holds no rows"))?;
        let shape = columns::first_shape(path, &first, &hooks)?;
        let mut names: Vec<String> = hooks.iter().map(|h| h.name.clone()).collect();
        if let (Some(h), 1) = (&opts.hook, names.len()) {
            names[0] = h.clone();
        }
        let layout = Layout {
            names,
            ds: shape.1.clone(),
            ctx: shape.0,
            tokens: token_col.is_some(),
            dtypes: hooks.iter().map(|h| h.dtype).collect(),
        };
        let stream = Stream::Table {
            src,
            hooks,
            token_col,
            shape,
            pending: Some(first),
            records: 0,
        };
        Ok((stream, layout))
    }

    /// The next chunk of whole contexts, of at most `max_rows` rows where the input allows.
    fn next(&mut self, max_rows: usize) -> Result<Option<Chunk>, ImportError> {
        match self {
            Stream::Raw(r) => {
                let mut c = r.next_chunk(max_rows)?;
                if let Some(c) = &mut c {
                    check_finite(r.array().path.as_path(), c, r.array().d())?;
                }
                Ok(c)
            }
            Stream::Table {
                src,
                hooks,
                token_col,
                shape,
                pending,
                records,
            } => {
                let batch = match pending.take() {
                    Some(b) => b,
                    None => match src.next_batch()? {
                        Some(b) => b,
                        None => return Ok(None),
                    },
                };
                let chunk = columns::batch_chunk(
                    &src.path,
                    &batch,
                    hooks,
                    *token_col,
                    (shape.0, &shape.1),
                    *records,
                )?;
                *records += batch.num_rows() as u64;
                Ok(Some(chunk))
            }
        }
    }
}

/// Refuses NaN and ±Inf, naming the row.
fn check_finite(path: &Path, c: &Chunk, d: usize) -> Result<(), ImportError> {
    if let Some(i) = c.hooks[0].iter().position(|x| !x.is_finite()) {
        return Err(ImportError::input(
            path,
            format!(
                "row {} holds {} (value {}); import takes finite values only",
                c.first_row + (i / d) as u64,
                c.hooks[0][i],
                i % d
            ),
        ));
    }
    Ok(())
}

/// Imports `opts.inputs` into a new dataset folder `out`; `progress(rows)` after every chunk.
/// A failed import removes the folder when it made it.
pub fn import(
    out: &Path,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, ImportError> {
    let inputs = files::expand(&opts.inputs)?;
    let existed = out.exists();
    let result = write_all(out, opts, &inputs, progress);
    if result.is_err() && !existed {
        let _ = std::fs::remove_dir_all(out);
    }
    result
}

fn write_all(
    out: &Path,
    opts: &ImportOptions,
    inputs: &[(PathBuf, Kind)],
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, ImportError> {
    let mut writer: Option<(DatasetWriter, Layout, PathBuf)> = None;
    let mut rows_done = 0u64;
    for (path, kind) in inputs {
        let (mut stream, layout) = Stream::open(path, *kind, opts)?;
        if writer.is_none() {
            let m = header(opts, inputs, &layout);
            let w = DatasetWriter::create(out, m, opts.writer)?;
            writer = Some((w, layout.clone(), path.clone()));
        }
        let Some((w, first, first_path)) = writer.as_mut() else {
            continue;
        };
        if let Some(diff) = differs(first, &layout) {
            return Err(ImportError::input(
                path,
                format!(
                    "{diff}, but {} has {}",
                    first_path.display(),
                    describe(first)
                ),
            ));
        }
        // About CHUNK_VALUES values, and no more than a shard, so --shard-tokens holds.
        let row_values: usize = layout.ds.iter().sum();
        let max_rows = (CHUNK_VALUES / row_values.max(1)).clamp(1, opts.writer.shard_rows.max(1));
        while let Some(chunk) = stream.next(max_rows)? {
            write_chunk(w, &chunk, &layout)?;
            rows_done += chunk.rows as u64;
            progress(rows_done);
        }
    }
    match writer {
        Some((w, ..)) => Ok(w.finish()?),
        None => Err(ImportError::input(out, "nothing to import")),
    }
}

/// How `b` differs from `a`, described as `b`'s shape; None when they agree.
fn differs(a: &Layout, b: &Layout) -> Option<String> {
    (a.names != b.names || a.ds != b.ds || a.ctx != b.ctx || a.tokens != b.tokens)
        .then(|| format!("it has {}", describe(b)))
}

fn describe(l: &Layout) -> String {
    let hooks: Vec<String> = l
        .names
        .iter()
        .zip(&l.ds)
        .map(|(n, d)| format!("{n} (d={d})"))
        .collect();
    let tokens = if l.tokens { ", token ids" } else { "" };
    format!("{}, ctx {}{tokens}", hooks.join(", "), l.ctx)
}

/// Hands one chunk to the writer: context ids continue the dataset's, positions count within
/// each context.
fn write_chunk(w: &mut DatasetWriter, c: &Chunk, layout: &Layout) -> Result<(), StoreError> {
    let ctx = layout.ctx;
    let first_context = w.next_context_id();
    let context_ids: Vec<u64> = (0..c.rows)
        .map(|r| first_context + (r / ctx) as u64)
        .collect();
    let positions: Vec<u32> = (0..c.rows).map(|r| (r % ctx) as u32).collect();
    let zeros;
    let token_ids = match &c.token_ids {
        Some(t) => t.as_slice(),
        None => {
            zeros = vec![0u32; c.rows];
            &zeros
        }
    };
    let tokens = vec![String::new(); c.rows];
    let special = vec![false; c.rows];
    let hooks: Vec<&[f32]> = c.hooks.iter().map(|h| h.as_slice()).collect();
    w.write_batch(&ContextBatch {
        context_ids: &context_ids,
        positions: &positions,
        token_ids,
        tokens: &tokens,
        special: &special,
        labels: &[],
        hooks: &hooks,
    })
}

/// The new dataset's manifest: model `imported` (or `--model`), no BOS, the inputs as corpus.
fn header(opts: &ImportOptions, inputs: &[(PathBuf, Kind)], layout: &Layout) -> Manifest {
    use sha2::Digest;
    let hooks = layout
        .names
        .iter()
        .zip(&layout.ds)
        .zip(&layout.dtypes)
        .map(|((name, &d), dt)| HookInfo {
            name: name.clone(),
            d,
            dtype: opts.dtype.unwrap_or(dt.storage()),
        })
        .collect();
    // Identifies the input by its files' names and sizes (hashing 10 GB of bytes would double
    // the import's reading).
    let mut sha = sha2::Sha256::new();
    for (p, _) in inputs {
        let size = std::fs::metadata(p).map_or(0, |m| m.len());
        sha.update(format!("{}\t{size}\n", p.display()));
    }
    Manifest::new(
        ModelInfo {
            id: opts.model.clone().unwrap_or_else(|| "imported".into()),
            revision: None,
            arch: "imported".into(),
            config_sha256: String::new(),
            weights_sha256: None,
            random_weights: false,
            seed: None,
        },
        String::new(),
        hooks,
        layout.ctx,
        Bos::None,
        CorpusInfo {
            sources: opts
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            sha256: hex::encode(sha.finalize()),
            format: "import".into(),
            text_field: None,
            documents: 0,
            empty_documents: 0,
        },
    )
}
