//! Parquet and Arrow inputs: a plain parquet file, Arrow IPC (file or stream, as HF datasets'
//! `save_to_disk` and SAELens's cached activations write), with any float list column.
//!
//! A hook column is a list of floats per record (`fixed_size_list`, `list` or `large_list` of
//! f16/f32/f64, or uint16 marked `unravel.dtype = bfloat16`): one row per record; or a list of
//! such lists (HF `Array2D`, SAELens's cache: `[context, d]` per record): one context of rows per
//! record. An integer column named `token_ids` or `input_ids` (one id, or one per row of the
//! context) gives the rows' token ids.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{Chunk, ImportError, SourceDtype};

/// Integer columns read as token ids.
const TOKEN_COLUMNS: [&str; 2] = ["token_ids", "input_ids"];

/// A hook column found in a schema.
#[derive(Debug, Clone)]
pub(crate) struct HookColumn {
    pub name: String,
    pub index: usize,
    pub dtype: SourceDtype,
    /// Nested lists (`[context, d]` per record) rather than one vector per record.
    pub nested: bool,
}

/// What a float element type is, or None for anything else.
fn float_dtype(field: &Field) -> Option<SourceDtype> {
    match field.data_type() {
        DataType::Float16 => Some(SourceDtype::F16),
        DataType::Float32 => Some(SourceDtype::F32),
        DataType::Float64 => Some(SourceDtype::F64),
        DataType::UInt16 if is_bf16(field) => Some(SourceDtype::Bf16),
        _ => None,
    }
}

fn is_bf16(field: &Field) -> bool {
    field
        .metadata()
        .get(crate::store::DTYPE_METADATA_KEY)
        .is_some_and(|v| v == "bfloat16")
}

/// The element field of a list type.
fn list_item(t: &DataType) -> Option<&Field> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f),
        _ => None,
    }
}

/// A column's hook shape: float list (not nested) or list of float lists (nested); else None.
fn hook_shape(field: &Field) -> Option<(SourceDtype, bool)> {
    let item = list_item(field.data_type())?;
    // The unravel.dtype marker sits on the hook field, not on its items.
    let bf16 = is_bf16(field) && matches!(item.data_type(), DataType::UInt16);
    if let Some(dt) = float_dtype(item).or(bf16.then_some(SourceDtype::Bf16)) {
        return Some((dt, false));
    }
    let inner = list_item(item.data_type())?;
    float_dtype(inner).map(|dt| (dt, true))
}

/// The hook columns to import: `wanted` by name (each must be a float list column), or every
/// float list column of the schema.
pub(crate) fn hook_columns(
    path: &Path,
    schema: &Schema,
    wanted: &[String],
) -> Result<Vec<HookColumn>, ImportError> {
    let found: Vec<HookColumn> = schema
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(index, f)| {
            hook_shape(f).map(|(dtype, nested)| HookColumn {
                name: f.name().clone(),
                index,
                dtype,
                nested,
            })
        })
        .collect();
    let names = || {
        schema
            .fields()
            .iter()
            .map(|f| format!("{} ({})", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if wanted.is_empty() {
        if found.is_empty() {
            return Err(ImportError::input(
                path,
                format!(
                    "no float list column (f16/bf16/f32/f64); its columns: {}",
                    names()
                ),
            ));
        }
        return Ok(found);
    }
    wanted
        .iter()
        .map(|w| match schema.index_of(w) {
            Err(_) => Err(ImportError::input(
                path,
                format!("--column {w}: no such column; its columns: {}", names()),
            )),
            Ok(i) => found.iter().find(|c| c.index == i).cloned().ok_or_else(|| {
                ImportError::input(
                    path,
                    format!(
                        "--column {w} is {}; import takes lists of floats (f16, bf16, f32, f64)",
                        schema.field(i).data_type()
                    ),
                )
            }),
        })
        .collect()
}

/// The token id column, if the schema has one.
pub(crate) fn token_column(schema: &Schema) -> Option<usize> {
    TOKEN_COLUMNS.iter().find_map(|n| {
        let i = schema.index_of(n).ok()?;
        let t = schema.field(i).data_type();
        let t = list_item(t).map_or(t, |f| f.data_type());
        t.is_integer().then_some(i)
    })
}

/// Record batches from a parquet file or an Arrow IPC file/stream.
pub(crate) struct BatchSource {
    pub path: PathBuf,
    pub schema: SchemaRef,
    batches: Box<dyn Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>>,
}

impl BatchSource {
    /// Opens `path` (parquet by its `PAR1` magic, else Arrow IPC), reading `batch_rows`
    /// records at a time where the format allows.
    pub fn open(path: &Path, batch_rows: usize) -> Result<BatchSource, ImportError> {
        let io = |e| ImportError::io(path, e);
        let mut magic = [0u8; 6];
        let n = File::open(path)
            .and_then(|mut f| f.read(&mut magic))
            .map_err(io)?;
        let file = File::open(path).map_err(io)?;
        let bad = |e: String| ImportError::input(path, e);
        if n >= 4 && &magic[..4] == b"PAR1" {
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| bad(format!("not a readable parquet file: {e}")))?;
            let reader = b
                .with_batch_size(batch_rows.max(1))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            return Ok(BatchSource {
                path: path.to_path_buf(),
                schema: reader.schema(),
                batches: Box::new(reader),
            });
        }
        if n == 6 && &magic == b"ARROW1" {
            let reader = arrow_ipc::reader::FileReader::try_new(file, None)
                .map_err(|e| bad(format!("not a readable Arrow file: {e}")))?;
            return Ok(BatchSource {
                path: path.to_path_buf(),
                schema: reader.schema(),
                batches: Box::new(reader),
            });
        }
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)
            .map_err(|e| bad(format!("neither parquet nor an Arrow IPC file/stream: {e}")))?;
        Ok(BatchSource {
            path: path.to_path_buf(),
            schema: reader.schema(),
            batches: Box::new(reader),
        })
    }

    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, ImportError> {
        match self.batches.next() {
            None => Ok(None),
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(ImportError::input(&self.path, format!("reading: {e}"))),
        }
    }
}

/// The rows of one record batch: every hook's values and the token ids, with `ctx` rows per
/// record for nested columns (1 otherwise) and `d` values per row; `first_record` numbers the
/// records in messages.
pub(crate) fn batch_chunk(
    path: &Path,
    batch: &RecordBatch,
    hooks: &[HookColumn],
    token_col: Option<usize>,
    shape: (usize, &[usize]),
    first_record: u64,
) -> Result<Chunk, ImportError> {
    let (ctx, ds) = shape;
    let records = batch.num_rows();
    let mut out = Vec::with_capacity(hooks.len());
    for (h, &d) in hooks.iter().zip(ds) {
        let col = batch.column(h.index);
        let mut values = Vec::with_capacity(records * ctx * d);
        for r in 0..records {
            let at = |m: String| {
                ImportError::input(
                    path,
                    format!("column {}, record {}: {m}", h.name, first_record + r as u64),
                )
            };
            let row = list_value(col, r).ok_or_else(|| at("is null".into()))?;
            if h.nested {
                if row.len() != ctx {
                    return Err(at(format!(
                        "holds {} rows, expected {ctx} (ragged)",
                        row.len()
                    )));
                }
                for j in 0..ctx {
                    let v = list_value(&row, j).ok_or_else(|| at(format!("row {j} is null")))?;
                    push_floats(&v, d, h.dtype, &mut values)
                        .map_err(|m| at(format!("row {j}: {m}")))?;
                }
            } else {
                push_floats(&row, d, h.dtype, &mut values).map_err(at)?;
            }
        }
        out.push(values);
    }
    let token_ids = match token_col {
        Some(i) => Some(tokens(path, batch.column(i), ctx, first_record)?),
        None => None,
    };
    Ok(Chunk {
        first_row: first_record * ctx as u64,
        rows: records * ctx,
        hooks: out,
        token_ids,
    })
}

/// The first record's shape for each hook: (ctx, [d per hook]). Nested hooks must agree on ctx.
pub(crate) fn first_shape(
    path: &Path,
    batch: &RecordBatch,
    hooks: &[HookColumn],
) -> Result<(usize, Vec<usize>), ImportError> {
    let mut ctx = None;
    let mut ds = vec![];
    for h in hooks {
        let bad = |m: &str| ImportError::input(path, format!("column {}: {m}", h.name));
        let row = list_value(batch.column(h.index), 0).ok_or_else(|| bad("record 0 is null"))?;
        let (c, d) = if h.nested {
            let inner = list_value(&row, 0).ok_or_else(|| bad("record 0 has no rows"))?;
            (row.len(), inner.len())
        } else {
            (1, row.len())
        };
        if d == 0 {
            return Err(bad("record 0 is an empty list"));
        }
        if *ctx.get_or_insert(c) != c {
            return Err(bad(
                "its context length differs from the other hook columns",
            ));
        }
        ds.push(d);
    }
    Ok((ctx.unwrap_or(1), ds))
}

/// Element `i` of a list array (any list kind), or None where null.
fn list_value(arr: &ArrayRef, i: usize) -> Option<ArrayRef> {
    if arr.is_null(i) {
        return None;
    }
    let any = arr.as_any();
    if let Some(l) = any.downcast_ref::<arrow_array::ListArray>() {
        return Some(l.value(i));
    }
    if let Some(l) = any.downcast_ref::<arrow_array::LargeListArray>() {
        return Some(l.value(i));
    }
    any.downcast_ref::<arrow_array::FixedSizeListArray>()
        .map(|l| l.value(i))
}

/// Appends the `d` floats of one row, refusing a wrong length, nulls and non-finite values.
fn push_floats(
    v: &ArrayRef,
    d: usize,
    dtype: SourceDtype,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    if v.len() != d {
        return Err(format!(
            "holds {} values, expected {d} (ragged rows)",
            v.len()
        ));
    }
    if v.null_count() > 0 {
        return Err("holds null values".into());
    }
    let start = out.len();
    let any = v.as_any();
    match dtype {
        SourceDtype::F16 => out.extend(
            any.downcast_ref::<arrow_array::Float16Array>()
                .ok_or("not f16")?
                .values()
                .iter()
                .map(|x| x.to_f32()),
        ),
        SourceDtype::F32 => out.extend_from_slice(
            any.downcast_ref::<arrow_array::Float32Array>()
                .ok_or("not f32")?
                .values(),
        ),
        SourceDtype::F64 => out.extend(
            any.downcast_ref::<arrow_array::Float64Array>()
                .ok_or("not f64")?
                .values()
                .iter()
                .map(|&x| x as f32),
        ),
        SourceDtype::Bf16 => out.extend(
            any.downcast_ref::<arrow_array::UInt16Array>()
                .ok_or("not bf16 bits")?
                .values()
                .iter()
                .map(|&b| half::bf16::from_bits(b).to_f32()),
        ),
    }
    if let Some(k) = out[start..].iter().position(|x| !x.is_finite()) {
        return Err(format!("value {k} is {}", out[start + k]));
    }
    Ok(())
}

/// Token ids of a batch's records: `ctx` per record from a list column, or one per record.
fn tokens(path: &Path, col: &ArrayRef, ctx: usize, first: u64) -> Result<Vec<u32>, ImportError> {
    let bad = |r: usize, m: &str| {
        ImportError::input(path, format!("token ids, record {}: {m}", first + r as u64))
    };
    let is_list = list_item(col.data_type()).is_some();
    let mut out = Vec::with_capacity(col.len() * ctx);
    for r in 0..col.len() {
        let ids = if is_list {
            list_value(col, r).ok_or_else(|| bad(r, "null"))?
        } else {
            col.slice(r, 1)
        };
        if ids.len() != ctx || ids.null_count() > 0 {
            return Err(bad(r, &format!("{} ids for {ctx} rows", ids.len())));
        }
        let n = out.len();
        push_ids(&ids, &mut out).ok_or_else(|| bad(r, "ids must be integers in 0..2^32"))?;
        debug_assert_eq!(out.len(), n + ctx);
    }
    Ok(out)
}

/// Appends an integer array as u32 ids; None for another type or an id out of range.
fn push_ids(a: &ArrayRef, out: &mut Vec<u32>) -> Option<()> {
    macro_rules! ints {
        ($($t:ty),*) => {$(
            if let Some(x) = a.as_any().downcast_ref::<$t>() {
                for v in x.values().iter() {
                    out.push(u32::try_from(*v).ok()?);
                }
                return Some(());
            }
        )*};
    }
    use arrow_array::{Int16Array, Int32Array, Int64Array, Int8Array};
    use arrow_array::{UInt16Array, UInt32Array, UInt64Array, UInt8Array};
    ints!(
        Int8Array,
        Int16Array,
        Int32Array,
        Int64Array,
        UInt8Array,
        UInt16Array,
        UInt32Array,
        UInt64Array
    );
    None
}
