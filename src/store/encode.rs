//! Parallel parquet encoding: the same file `ArrowWriter` would write (same schema, embedded
//! Arrow schema, row groups of exactly `row_group_rows` rows), but the column chunks of several
//! row groups are encoded at once on rayon's pool. parquet-rs encodes a column on one thread at
//! about 30–40k rows/s for a d=768 hook (list levels, a struct per float16 value, zstd), so a
//! single-threaded writer would hold back a GPU forward pass.

use std::io::Write;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use super::f16_chunk;

/// Input bytes (Arrow arrays) buffered before encoding, unless a row group alone is larger.
const FLUSH_BYTES: usize = 128 << 20;

/// Values handed to a column writer at once: parquet-rs materialises a 24-byte struct per
/// float16 value, and whole row groups would cost fresh, page-faulting allocations.
const SLICE_VALUES: usize = 1 << 18;

/// Values per row of a column (d for a hook's fixed-size list).
fn values_per_row(field: &Field) -> usize {
    match field.data_type() {
        DataType::FixedSizeList(_, n) => (*n).max(1) as usize,
        _ => 1,
    }
}

/// One encoded column chunk: by parquet-rs's Arrow writer, or by [`f16_chunk`] for f16 hooks.
enum Chunk {
    Arrow(ArrowColumnChunk),
    Raw(f16_chunk::RawChunk),
}

/// Buffers record batches and writes them as row groups, encoded in parallel.
pub(crate) struct RowGroupEncoder<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    row_group_rows: usize,
    /// Rows buffered before a flush: whole row groups, up to one per thread and FLUSH_BYTES.
    flush_rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    row_groups: usize,
}

impl<W: Write + Send> RowGroupEncoder<W> {
    /// An encoder writing `schema` to `sink`. `row_bytes` (input bytes per row) sizes the buffer.
    pub(crate) fn try_new(
        sink: W,
        schema: SchemaRef,
        props: WriterProperties,
        row_group_rows: usize,
        row_bytes: usize,
    ) -> Result<Self> {
        // ArrowWriter embeds the Arrow schema in the footer metadata; then we take over.
        let (file, factory) =
            ArrowWriter::try_new(sink, schema.clone(), Some(props))?.into_serialized_writer()?;
        let by_threads = rayon::current_num_threads().max(1);
        let by_bytes = FLUSH_BYTES / (row_bytes.max(1) * row_group_rows);
        Ok(RowGroupEncoder {
            file,
            factory,
            schema,
            row_group_rows,
            flush_rows: row_group_rows * by_threads.min(by_bytes).max(1),
            pending: vec![],
            pending_rows: 0,
            row_groups: 0,
        })
    }

    /// Appends rows; encodes and writes whole row groups once enough are buffered.
    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= self.flush_rows {
            self.flush(false)?;
        }
        Ok(())
    }

    /// Writes everything buffered (the last row group may be short), the footer, and returns
    /// the sink.
    pub(crate) fn finish(mut self) -> Result<W> {
        self.flush(true)?;
        self.file.into_inner()
    }

    /// Cuts the buffer into row groups (keeping a partial one unless `last`), encodes their
    /// column chunks in parallel and appends them in order.
    fn flush(&mut self, last: bool) -> Result<()> {
        let groups = self.take_row_groups(last);
        if groups.is_empty() {
            return Ok(());
        }
        let fields = self.schema.fields().len();
        let mut jobs = Vec::with_capacity(groups.len() * fields);
        for (g, _) in groups.iter().enumerate() {
            let writers = self.factory.create_column_writers(self.row_groups + g)?;
            if writers.len() != fields {
                return Err(ParquetError::General(format!(
                    "expected one leaf column per field, got {} for {fields} fields",
                    writers.len()
                )));
            }
            jobs.extend(writers.into_iter().enumerate().map(|(f, w)| (g, f, w)));
        }
        let schema = &self.schema;
        let (descr, props) = (self.file.schema_descr(), self.file.properties());
        let chunks: Vec<Chunk> = jobs
            .into_par_iter()
            .map(|(g, f, mut writer)| {
                let field = schema.field(f);
                let parts: Vec<ArrayRef> = groups[g].iter().map(|b| b.column(f).clone()).collect();
                let column = descr.column(f);
                if parts.iter().all(|p| f16_chunk::applies(p, &column, props)) {
                    return f16_chunk::encode(&parts, column, props).map(Chunk::Raw);
                }
                let step = (SLICE_VALUES / values_per_row(field)).max(1);
                for batch in &groups[g] {
                    let column = batch.column(f);
                    for start in (0..column.len()).step_by(step) {
                        let slice = column.slice(start, step.min(column.len() - start));
                        for leaf in compute_leaves(field, &slice)? {
                            writer.write(&leaf)?;
                        }
                    }
                }
                writer.close().map(Chunk::Arrow)
            })
            .collect::<Result<_>>()?;
        let mut chunks = chunks.into_iter();
        for _ in &groups {
            let mut row_group = self.file.next_row_group()?;
            for chunk in chunks.by_ref().take(fields) {
                match chunk {
                    Chunk::Arrow(c) => c.append_to_row_group(&mut row_group)?,
                    Chunk::Raw(c) => row_group.append_column(&c.bytes, c.close)?,
                }
            }
            row_group.close()?;
        }
        self.row_groups += groups.len();
        Ok(())
    }

    /// Removes whole row groups (and with `last`, the rest) from the buffer.
    fn take_row_groups(&mut self, last: bool) -> Vec<Vec<RecordBatch>> {
        let mut groups = vec![];
        let mut current = vec![];
        let mut current_rows = 0;
        for batch in std::mem::take(&mut self.pending) {
            let mut offset = 0;
            while offset < batch.num_rows() {
                let take = (self.row_group_rows - current_rows).min(batch.num_rows() - offset);
                current.push(batch.slice(offset, take));
                current_rows += take;
                offset += take;
                if current_rows == self.row_group_rows {
                    groups.push(std::mem::take(&mut current));
                    current_rows = 0;
                }
            }
        }
        if current_rows > 0 && last {
            groups.push(current);
            current_rows = 0;
        } else {
            self.pending = current;
        }
        self.pending_rows = current_rows;
        groups
    }
}
