//! Streaming reader of one parquet file of a corpus (the layout of Hugging Face datasets' parquet
//! exports: a text column plus label columns such as `label`), one record batch at a time and
//! only the columns asked for.
//!
//! The text column may be a string column (`Utf8`, `LargeUtf8`, `Utf8View`) or a binary one;
//! parquet itself rejects invalid UTF-8 in string columns (an error naming the file, which
//! `lossy` cannot mend), binary text goes through the same UTF-8 check as the other formats.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::record::{CorpusOptions, Record};
use super::utf8::decode_utf8;
use super::{CorpusError, Result};

/// Rows per record batch: a few MB of text at typical document lengths.
const BATCH_ROWS: usize = 256;

/// One open parquet file, positioned at a row.
pub(super) struct ParquetReader {
    file: PathBuf,
    batches: ParquetRecordBatchReader,
    text_field: String,
    label_fields: Vec<String>,
    /// The current batch's text column and its label columns as strings.
    text: Option<ArrayRef>,
    labels: Vec<Vec<Option<String>>>,
    /// Next row in the current batch.
    row: usize,
    /// Rows of this file before the current batch.
    rows_before: u64,
}

impl ParquetReader {
    /// Checks that the file is parquet and has the text and label columns, with usable types.
    pub fn check(path: &Path, options: &CorpusOptions) -> Result<()> {
        let builder = builder(path)?;
        column_indices(path, builder.schema(), options).map(|_| ())
    }

    /// Opens the file for reading the text and label columns only.
    pub fn open(path: &Path, options: &CorpusOptions) -> Result<Self> {
        let builder = builder(path)?;
        let indices = column_indices(path, builder.schema(), options)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let batches = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| parquet_error(path, e))?;
        Ok(ParquetReader {
            file: path.into(),
            batches,
            text_field: options.text_field.clone(),
            label_fields: options.label_fields.clone(),
            text: None,
            labels: Vec::new(),
            row: 0,
            rows_before: 0,
        })
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_record(&mut self, lossy: bool) -> Result<Option<Record>> {
        loop {
            if let Some(text) = &self.text {
                if self.row < text.len() {
                    let row = self.row;
                    self.row += 1;
                    return self.record(row, lossy).map(Some);
                }
                self.rows_before += text.len() as u64;
            }
            match self.batches.next() {
                None => return Ok(None),
                Some(batch) => {
                    let batch = batch.map_err(|e| CorpusError::Parquet {
                        file: self.file.clone(),
                        reason: format!(
                            "cannot read rows after row {} ({e}); the file is damaged, or its text is not valid UTF-8",
                            self.rows_before
                        ),
                    })?;
                    self.load(&batch)?;
                }
            }
        }
    }

    /// Takes the columns of a new batch (labels converted to strings once per batch).
    fn load(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| CorpusError::Parquet {
                    file: self.file.clone(),
                    reason: format!("column `{name}` vanished from a record batch"),
                })
        };
        let text = column(&self.text_field)?;
        let mut labels = Vec::with_capacity(self.label_fields.len());
        for name in &self.label_fields {
            let values =
                label_strings(column(name)?.as_ref()).ok_or_else(|| CorpusError::Parquet {
                    file: self.file.clone(),
                    reason: format!("label column `{name}` has an unsupported type"),
                })?;
            labels.push(values);
        }
        self.text = Some(text);
        self.labels = labels;
        self.row = 0;
        Ok(())
    }

    /// The record at `row` of the current batch.
    fn record(&self, row: usize, lossy: bool) -> Result<Record> {
        let labels = self.labels.iter().map(|col| col[row].clone()).collect();
        let Some(text) = &self.text else {
            return Ok(Record {
                text: None,
                labels,
                replacements: 0,
            });
        };
        let row_in_file = self.rows_before + row as u64;
        let bytes_to_text = |bytes: &[u8]| {
            decode_utf8(bytes.to_vec(), lossy, |offset| CorpusError::InvalidUtf8 {
                file: self.file.clone(),
                line: None,
                row: Some(row_in_file),
                offset: offset as u64,
            })
        };
        let (text, replacements) = if text.is_null(row) {
            (None, 0)
        } else {
            match text.data_type() {
                DataType::Utf8 => (Some(text.as_string::<i32>().value(row).to_owned()), 0),
                DataType::LargeUtf8 => (Some(text.as_string::<i64>().value(row).to_owned()), 0),
                DataType::Utf8View => (Some(text.as_string_view().value(row).to_owned()), 0),
                DataType::Binary => to_some(bytes_to_text(text.as_binary::<i32>().value(row))?),
                DataType::LargeBinary => {
                    to_some(bytes_to_text(text.as_binary::<i64>().value(row))?)
                }
                DataType::BinaryView => to_some(bytes_to_text(text.as_binary_view().value(row))?),
                other => {
                    return Err(CorpusError::Parquet {
                        file: self.file.clone(),
                        reason: format!("text column has type {other}"),
                    })
                }
            }
        };
        Ok(Record {
            text,
            labels,
            replacements,
        })
    }
}

fn to_some((text, replacements): (String, u64)) -> (Option<String>, u64) {
    (Some(text), replacements)
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| CorpusError::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> CorpusError {
    CorpusError::Parquet {
        file: path.into(),
        reason: format!("not a readable parquet file ({e}); the file is damaged or incomplete"),
    }
}

/// Root-column indices of the text and label columns, checking their types.
fn column_indices(path: &Path, schema: &Schema, options: &CorpusOptions) -> Result<Vec<usize>> {
    let bad = |reason: String| CorpusError::Parquet {
        file: path.into(),
        reason,
    };
    let names = || {
        schema
            .fields()
            .iter()
            .map(|f| format!("{} ({})", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |name: &str, flag: &str| {
        schema.index_of(name).map_err(|_| {
            bad(format!(
                "no column `{name}` (columns: {}); name the right one with {flag}",
                names()
            ))
        })
    };
    let text = find(&options.text_field, "--text-field")?;
    let text_type = schema.field(text).data_type();
    if !is_text_type(text_type) {
        return Err(bad(format!(
            "text column `{}` has type {text_type}, not string or binary; name the text column with --text-field (columns: {})",
            options.text_field,
            names()
        )));
    }
    let mut indices = vec![text];
    for name in &options.label_fields {
        let index = find(name, "--label-field")?;
        let label_type = schema.field(index).data_type();
        if !is_label_type(label_type) {
            return Err(bad(format!(
                "label column `{name}` has type {label_type}; labels must be strings, integers, floats, booleans or dictionaries of those"
            )));
        }
        indices.push(index);
    }
    Ok(indices)
}

fn is_text_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

fn is_label_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => is_label_type(values),
        DataType::Null
        | DataType::Boolean
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => true,
        _ => false,
    }
}

/// A label column as strings (`None` for nulls); `None` for an unsupported type.
fn label_strings(array: &dyn Array) -> Option<Vec<Option<String>>> {
    fn each<T: ToString>(array: &dyn Array, value: impl Fn(usize) -> T) -> Vec<Option<String>> {
        (0..array.len())
            .map(|i| (!array.is_null(i)).then(|| value(i).to_string()))
            .collect()
    }
    fn primitive<T: ArrowPrimitiveType>(array: &dyn Array) -> Option<Vec<Option<String>>>
    where
        T::Native: ToString,
    {
        let values = array.as_primitive_opt::<T>()?;
        Some(each(array, |i| values.value(i)))
    }
    Some(match array.data_type() {
        DataType::Null => vec![None; array.len()],
        DataType::Boolean => {
            let values = array.as_boolean();
            each(array, |i| values.value(i))
        }
        DataType::Utf8 => {
            let values = array.as_string::<i32>();
            each(array, |i| values.value(i))
        }
        DataType::LargeUtf8 => {
            let values = array.as_string::<i64>();
            each(array, |i| values.value(i))
        }
        DataType::Utf8View => {
            let values = array.as_string_view();
            each(array, |i| values.value(i))
        }
        DataType::Int8 => primitive::<Int8Type>(array)?,
        DataType::Int16 => primitive::<Int16Type>(array)?,
        DataType::Int32 => primitive::<Int32Type>(array)?,
        DataType::Int64 => primitive::<Int64Type>(array)?,
        DataType::UInt8 => primitive::<UInt8Type>(array)?,
        DataType::UInt16 => primitive::<UInt16Type>(array)?,
        DataType::UInt32 => primitive::<UInt32Type>(array)?,
        DataType::UInt64 => primitive::<UInt64Type>(array)?,
        DataType::Float32 => primitive::<Float32Type>(array)?,
        DataType::Float64 => primitive::<Float64Type>(array)?,
        DataType::Dictionary(_, _) => {
            // Convert the (few) dictionary values once, then look each key up.
            let dict = array.as_any_dictionary_opt()?;
            let values = label_strings(dict.values().as_ref())?;
            let keys = dict.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        None
                    } else {
                        keys.get(i).and_then(|&k| values.get(k).cloned().flatten())
                    }
                })
                .collect()
        }
        _ => return None,
    })
}
