//! Streaming parallel parquet encoding: the same file `ArrowWriter` would write (same schema,
//! embedded Arrow schema, row groups of exactly `row_group_rows` rows), but every incoming batch
//! is encoded at once, its columns in parallel on rayon's pool, into the open row group's column
//! writers. So encoding overlaps whatever produces the batches (the forward pass), and only the
//! last batch is left to encode when the shard closes.
//!
//! Float16 hook columns go through [`f16_chunk`] (pages laid out by hand); every other column
//! through parquet-rs's Arrow column writers.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use super::f16_chunk;

/// Values handed to an Arrow column writer at once: parquet-rs materialises a struct per value,
/// and whole batches would cost large fresh, page-faulting allocations.
const SLICE_VALUES: usize = 1 << 18;

/// CPU nanoseconds of all encoding jobs run on rayon's pool, process-wide (for reports).
static ENCODE_CPU_NANOS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn cpu_secs() -> f64 {
    ENCODE_CPU_NANOS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// Runs `job`, adding the CPU time of the thread it ran on to [`ENCODE_CPU_NANOS`].
fn timed<T>(job: impl FnOnce() -> T) -> T {
    let start = super::thread_cpu_secs();
    let out = job();
    let nanos = ((super::thread_cpu_secs() - start) * 1e9).max(0.0);
    ENCODE_CPU_NANOS.fetch_add(nanos as u64, Ordering::Relaxed);
    out
}

/// Values per row of a column (d for a hook's fixed-size list).
fn values_per_row(field: &Field) -> usize {
    match field.data_type() {
        DataType::FixedSizeList(_, n) => (*n).max(1) as usize,
        _ => 1,
    }
}

/// One column of the open row group.
enum ColumnWriter {
    Arrow(Box<ArrowColumnWriter>),
    F16(Box<f16_chunk::ChunkWriter>),
}

/// Encodes record batches into row groups as they arrive.
pub(crate) struct RowGroupEncoder<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    row_group_rows: usize,
    /// The open row group's column writers (created on its first row) and its row count.
    open: Option<Vec<ColumnWriter>>,
    open_rows: usize,
    row_groups: usize,
    /// Buffers of the last row group's f16 chunks, for the next one's.
    spare: Vec<f16_chunk::Buffers>,
}

impl<W: Write + Send> RowGroupEncoder<W> {
    /// An encoder writing `schema` to `sink` in row groups of `row_group_rows` rows.
    pub(crate) fn try_new(
        sink: W,
        schema: SchemaRef,
        props: WriterProperties,
        row_group_rows: usize,
    ) -> Result<Self> {
        // ArrowWriter embeds the Arrow schema in the footer metadata; then we take over.
        let (file, factory) =
            ArrowWriter::try_new(sink, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(RowGroupEncoder {
            file,
            factory,
            schema,
            row_group_rows: row_group_rows.max(1),
            open: None,
            open_rows: 0,
            row_groups: 0,
            spare: Vec::new(),
        })
    }

    /// Encodes `batch` into the open row group, closing each row group as it fills.
    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.row_group_rows - self.open_rows).min(batch.num_rows() - offset);
            let part = batch.slice(offset, take);
            let schema = &self.schema;
            let mut columns = match self.open.take() {
                Some(c) => c,
                None => new_row_group(
                    &self.factory,
                    &self.file,
                    schema,
                    self.row_groups,
                    &mut self.spare,
                )?,
            };
            columns
                .par_iter_mut()
                .enumerate()
                .try_for_each(|(f, column)| {
                    timed(|| write_column(column, schema.field(f), &part, f))
                })?;
            self.open = Some(columns);
            self.open_rows += take;
            offset += take;
            if self.open_rows == self.row_group_rows {
                self.close_row_group()?;
            }
        }
        Ok(())
    }

    /// Capacities of the chunk buffers kept for the next row group (for tests).
    #[cfg(test)]
    pub(crate) fn spare_chunk_capacities(&self) -> Vec<usize> {
        self.spare.iter().map(|b| b.sink_capacity()).collect()
    }

    /// Closes the last (possibly short) row group, writes the footer and returns the sink.
    pub(crate) fn finish(mut self) -> Result<W> {
        self.close_row_group()?;
        self.file.into_inner()
    }

    /// Closes the open row group's columns in parallel and appends them in order.
    fn close_row_group(&mut self) -> Result<()> {
        let Some(columns) = self.open.take() else {
            return Ok(());
        };
        let chunks: Vec<Chunk> = columns
            .into_par_iter()
            .map(|c| {
                timed(|| match c {
                    ColumnWriter::Arrow(w) => w.close().map(Chunk::Arrow),
                    ColumnWriter::F16(w) => w.close().map(Chunk::F16),
                })
            })
            .collect::<Result<_>>()?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            match chunk {
                Chunk::Arrow(c) => c.append_to_row_group(&mut row_group)?,
                Chunk::F16(c) => self.spare.push(c.append_to(&mut row_group)?),
            }
        }
        row_group.close()?;
        self.row_groups += 1;
        self.open_rows = 0;
        Ok(())
    }
}

/// A closed column chunk.
enum Chunk {
    Arrow(parquet::arrow::arrow_writer::ArrowColumnChunk),
    F16(f16_chunk::RawChunk),
}

/// One writer per field (each field is one leaf column): the f16 page writer where it applies.
fn new_row_group<W: Write + Send>(
    factory: &ArrowRowGroupWriterFactory,
    file: &SerializedFileWriter<W>,
    schema: &SchemaRef,
    index: usize,
    spare: &mut Vec<f16_chunk::Buffers>,
) -> Result<Vec<ColumnWriter>> {
    let writers = factory.create_column_writers(index)?;
    let fields = schema.fields().len();
    if writers.len() != fields {
        return Err(ParquetError::General(format!(
            "expected one leaf column per field, got {} for {fields} fields",
            writers.len()
        )));
    }
    let (descr, props) = (file.schema_descr(), file.properties());
    Ok(writers
        .into_iter()
        .enumerate()
        .map(|(f, w)| {
            let column = descr.column(f);
            match f16_chunk::ChunkWriter::new(schema.field(f), column, props, spare) {
                Some(fast) => ColumnWriter::F16(Box::new(fast)),
                None => ColumnWriter::Arrow(Box::new(w)),
            }
        })
        .collect())
}

fn write_column(
    column: &mut ColumnWriter,
    field: &Field,
    batch: &RecordBatch,
    f: usize,
) -> Result<()> {
    let array = batch.column(f);
    match column {
        ColumnWriter::F16(w) => w.write(array),
        ColumnWriter::Arrow(w) => {
            let step = (SLICE_VALUES / values_per_row(field)).max(1);
            for start in (0..array.len()).step_by(step) {
                let slice = array.slice(start, step.min(array.len() - start));
                for leaf in compute_leaves(field, &slice)? {
                    w.write(&leaf)?;
                }
            }
            Ok(())
        }
    }
}
