//! Float16 hook columns encoded straight into parquet pages.
//!
//! Why: parquet-rs writes each Float16 value as a FIXED_LEN_BYTE_ARRAY(2) holding its own
//! reference-counted `Bytes` slice, so every 2-byte value costs a clone and a drop of a shared
//! buffer; at 13 hooks × 768 values per token that was most of the writer's CPU time. A
//! fixed-size list of non-null f16 values is simple to lay out by hand. Each v1 data page holds
//! whole rows: the repetition levels (0, then d − 1 ones, per row), the definition levels (all at
//! the maximum), then the PLAIN values, which are just the little-endian f16 bits; the page is
//! zstd-compressed as a whole. The chunk (with its offset index) is spliced into the row group
//! like any encoded column, so readers see the same schema and encodings ArrowWriter would write.

use std::cell::RefCell;
use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::Float16Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Uncompressed value bytes per data page (parquet-rs's default page size limit).
const PAGE_BYTES: usize = 1 << 20;

/// An encoded column chunk, ready for `SerializedRowGroupWriter::append_column`.
pub(crate) struct RawChunk {
    bytes: Bytes,
    close: ColumnCloseResult,
    /// The writer's page buffers, for the next row group's writer.
    spare: Buffers,
}

impl RawChunk {
    /// Appends the chunk to `row_group`, then returns the buffers it was built in (its bytes
    /// among them, no longer shared once written) for [`ChunkWriter::new`] to reuse.
    pub(crate) fn append_to<W: Write + Send>(
        self,
        row_group: &mut SerializedRowGroupWriter<'_, W>,
    ) -> Result<Buffers> {
        row_group.append_column(&self.bytes, self.close)?;
        let mut spare = self.spare;
        spare.sink = self.bytes.try_into_mut().map(Vec::from).unwrap_or_default();
        Ok(spare)
    }
}

/// A chunk writer's buffers: a row group's chunk is ~12 MB per hook, and fresh buffers for
/// every row group cost page faults (zeroing, cgroup charging) on the way in and TLB-flushing
/// unmaps on the way out; the encoder hands them from one row group's writers to the next.
#[derive(Default)]
pub(crate) struct Buffers {
    body: Vec<u8>,
    page_out: Vec<u8>,
    sink: Vec<u8>,
}

impl Buffers {
    #[cfg(test)]
    pub(crate) fn sink_capacity(&self) -> usize {
        self.sink.capacity()
    }
}

/// The compression this writer can apply itself, or `None` (use the generic path).
fn codec(props: &WriterProperties, descr: &ColumnDescPtr) -> Option<Option<i32>> {
    let plain = matches!(props.encoding(descr.path()), None | Some(Encoding::PLAIN));
    match props.compression(descr.path()) {
        _ if !plain => None,
        Compression::ZSTD(level) => Some(Some(level.compression_level())),
        Compression::UNCOMPRESSED => Some(None),
        _ => None,
    }
}

/// One row group's column chunk of a non-nullable fixed-size list of non-nullable Float16,
/// written page by page as rows arrive.
pub(crate) struct ChunkWriter {
    descr: ColumnDescPtr,
    zstd_level: Option<i32>,
    d: usize,
    rows_per_page: usize,
    /// The page being filled: the level sections of a full page (the same for every full
    /// page), then the value bytes of the rows that will fill it. Values go straight here.
    body: Vec<u8>,
    /// Length of `body`'s level sections.
    levels_len: usize,
    /// The compressed page's buffer, taken back after each page.
    page_out: Vec<u8>,
    sink: TrackedWrite<Vec<u8>>,
    offsets: OffsetIndexBuilder,
    rows: usize,
    compressed: i64,
    uncompressed: i64,
}

impl ChunkWriter {
    /// A writer for `field`'s leaf column `descr`, or `None` where this layout does not apply
    /// (another type, nullable, another repetition, or a codec or encoding it does not write).
    /// It takes its buffers from `spare` when there are some.
    pub(crate) fn new(
        field: &Field,
        descr: ColumnDescPtr,
        props: &WriterProperties,
        spare: &mut Vec<Buffers>,
    ) -> Option<ChunkWriter> {
        let DataType::FixedSizeList(item, d) = field.data_type() else {
            return None;
        };
        let fits = *item.data_type() == DataType::Float16
            && !item.is_nullable()
            && !field.is_nullable()
            && descr.max_rep_level() == 1
            && (1..=255).contains(&descr.max_def_level());
        let zstd_level = codec(props, &descr).filter(|_| fits)?;
        let d = (*d).max(1) as usize;
        let rows_per_page = (PAGE_BYTES / (2 * d)).max(1);
        let Buffers {
            mut body,
            page_out,
            mut sink,
        } = spare.pop().unwrap_or_default();
        body.clear();
        body.reserve(PAGE_BYTES + 64 * 1024);
        sink.clear();
        page_levels(&mut body, rows_per_page, d, descr.max_def_level() as u8);
        let levels_len = body.len();
        Some(ChunkWriter {
            descr,
            zstd_level,
            d,
            rows_per_page,
            body,
            levels_len,
            page_out,
            sink: TrackedWrite::new(sink),
            offsets: OffsetIndexBuilder::new(),
            rows: 0,
            compressed: 0,
            uncompressed: 0,
        })
    }

    /// Appends the rows of `column` (this field's arrow column), writing every full page.
    pub(crate) fn write(&mut self, column: &ArrayRef) -> Result<()> {
        if column.null_count() > 0 {
            return Err(ParquetError::General(
                "f16 chunk: nulls in a non-nullable column".into(),
            ));
        }
        let values = column
            .as_fixed_size_list()
            .values()
            .as_primitive::<Float16Type>()
            .values();
        let page_bytes = self.rows_per_page * 2 * self.d;
        // PLAIN is little-endian, like arrow's buffers on every target we build.
        let le_bytes;
        let mut bytes: &[u8] = if cfg!(target_endian = "little") {
            values.inner().as_slice()
        } else {
            le_bytes = values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>();
            &le_bytes
        };
        while !bytes.is_empty() {
            let room = page_bytes - (self.body.len() - self.levels_len);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.body.extend_from_slice(now);
            bytes = rest;
            if self.body.len() - self.levels_len == page_bytes {
                self.write_page(self.rows_per_page)?;
                self.body.truncate(self.levels_len);
            }
        }
        Ok(())
    }

    /// Compresses `body` (levels and values of `rows` rows) and appends it as one data page.
    fn write_page(&mut self, rows: usize) -> Result<()> {
        let mut out = std::mem::take(&mut self.page_out);
        out.clear();
        match self.zstd_level {
            Some(level) => compress(&self.body, level, &mut out)
                .map_err(|e| ParquetError::General(format!("zstd: {e}")))?,
            None => out.extend_from_slice(&self.body),
        }
        let buf = Bytes::from(out);
        let ours = buf.clone();
        let page = Page::DataPage {
            buf,
            num_values: (rows * self.d) as u32,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.sink)
            .write_page(CompressedPage::new(page, self.body.len()))?;
        // The page writer has dropped its handle, so this is the only one: no copy.
        self.page_out = ours.try_into_mut().map(Vec::from).unwrap_or_default();
        self.offsets
            .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offsets.append_row_count(rows as i64);
        self.compressed += spec.compressed_size as i64;
        self.uncompressed += spec.uncompressed_size as i64;
        self.rows += rows;
        Ok(())
    }

    /// Writes the last (short) page and returns the chunk with its metadata.
    pub(crate) fn close(mut self) -> Result<RawChunk> {
        let value_bytes = self.body.len() - self.levels_len;
        if value_bytes > 0 {
            // A short page: its level sections are shorter than a full page's.
            let rows = value_bytes / (2 * self.d);
            let values = self.body.split_off(self.levels_len);
            self.body.clear();
            page_levels(
                &mut self.body,
                rows,
                self.d,
                self.descr.max_def_level() as u8,
            );
            self.body.extend_from_slice(&values);
            self.write_page(rows)?;
        }
        let compression = match self.zstd_level {
            Some(l) => Compression::ZSTD(ZstdLevel::try_new(l)?),
            None => Compression::UNCOMPRESSED,
        };
        let metadata = ColumnChunkMetaData::builder(self.descr)
            .set_compression(compression)
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_num_values((self.rows * self.d) as i64)
            .set_total_compressed_size(self.compressed)
            .set_total_uncompressed_size(self.uncompressed)
            .set_data_page_offset(0)
            .build()?;
        let bytes = Bytes::from(self.sink.into_inner()?);
        let spare = Buffers {
            body: self.body,
            page_out: self.page_out,
            sink: Vec::new(),
        };
        Ok(RawChunk {
            spare,
            close: ColumnCloseResult {
                bytes_written: bytes.len() as u64,
                rows_written: self.rows as u64,
                metadata,
                bloom_filter: None,
                column_index: None,
                offset_index: Some(self.offsets.build()),
            },
            bytes,
        })
    }
}

thread_local! {
    /// This thread's zstd context and its level. A fresh context per 1 MiB page would allocate
    /// and clear its match tables (about a megabyte) every page; the encoding threads reuse one.
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// `body` zstd-compressed at `level` into `out`, with this thread's reused context.
fn compress(body: &[u8], level: i32, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.reserve(zstd::zstd_safe::compress_bound(body.len()));
    ZSTD.with(|slot| {
        let mut slot = slot.borrow_mut();
        let compressor = match &mut *slot {
            Some((l, c)) if *l == level => c,
            other => &mut other.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress_to_buffer(body, out).map(|_| ())
    })
}

/// The v1 page's level sections for `rows` full lists of `d` values: repetition levels
/// (bit width 1) and definition levels (all `max_def`), each RLE-encoded behind a 4-byte length.
fn page_levels(body: &mut Vec<u8>, rows: usize, d: usize, max_def: u8) {
    let start = body.len();
    body.extend_from_slice(&[0; 4]);
    for _ in 0..rows {
        rle_run(body, 1, 0); // each row starts a new list
        if d > 1 {
            rle_run(body, d - 1, 1);
        }
    }
    let len = (body.len() - start - 4) as u32;
    body[start..start + 4].copy_from_slice(&len.to_le_bytes());

    let start = body.len();
    body.extend_from_slice(&[0; 4]);
    rle_run(body, rows * d, max_def);
    let len = (body.len() - start - 4) as u32;
    body[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// One RLE run of the parquet hybrid encoding: ULEB128 `count << 1`, then the value in one byte
/// (enough for bit widths up to 8).
fn rle_run(body: &mut Vec<u8>, count: usize, value: u8) {
    let mut header = (count as u64) << 1;
    loop {
        let byte = (header & 0x7f) as u8;
        header >>= 7;
        if header == 0 {
            body.push(byte);
            break;
        }
        body.push(byte | 0x80);
    }
    body.push(value);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{FixedSizeListArray, Float16Array, RecordBatch};
    use arrow_schema::{Field, Schema};
    use half::f16;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    use super::super::encode::RowGroupEncoder;
    use super::*;

    /// `rows` lists of `d` f16 values, each a function of (row, component).
    fn batch(schema: &Arc<Schema>, first: usize, rows: usize, d: usize) -> RecordBatch {
        let values: Float16Array = (first * d..(first + rows) * d)
            .map(|i| f16::from_f32(((i * 37 % 1001) as f32 - 500.0) / 7.0))
            .collect();
        let item = Arc::new(Field::new("item", DataType::Float16, false));
        let list = FixedSizeListArray::new(item, d as i32, Arc::new(values), None);
        RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).unwrap()
    }

    /// The schema of one non-nullable f16 hook of width `d`, and writer properties.
    fn one_hook(d: usize, compression: Compression) -> (Arc<Schema>, WriterProperties) {
        let item = Arc::new(Field::new("item", DataType::Float16, false));
        let field = Field::new("h", DataType::FixedSizeList(item, d as i32), false);
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(false)
            .build();
        (Arc::new(Schema::new(vec![field])), props)
    }

    fn read_all(bytes: Vec<u8>) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn many_pages_and_a_short_row_group_read_back_as_arrow_writer_output() {
        // d = 300: 1747 rows per page, so 4096-row groups hold three pages, the last one short;
        // 5000 rows leave a short second row group.
        let d = 300;
        let (schema, props) = one_hook(d, Compression::ZSTD(ZstdLevel::try_new(3).unwrap()));
        let batches: Vec<RecordBatch> = (0..5).map(|i| batch(&schema, i * 1000, 1000, d)).collect();

        let mut ours =
            RowGroupEncoder::try_new(Vec::new(), schema.clone(), props.clone(), 4096).unwrap();
        let mut reference = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).unwrap();
        for b in &batches {
            ours.write(b.clone()).unwrap();
            reference.write(b).unwrap();
        }
        let ours = ours.finish().unwrap();
        let reference = reference.into_inner().unwrap();

        let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(ours.clone()))
            .unwrap()
            .metadata()
            .clone();
        assert_eq!(meta.num_row_groups(), 2);
        assert_eq!(meta.row_group(0).num_rows(), 4096);
        assert_eq!(meta.row_group(1).num_rows(), 904);
        let chunk = meta.row_group(0).column(0);
        assert_eq!(chunk.num_values(), 4096 * d as i64);
        // (files do not record the zstd level, so only the codec is checked)
        assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
        assert_eq!(
            chunk.encodings().collect::<Vec<_>>(),
            [Encoding::PLAIN, Encoding::RLE]
        );

        let (a, b) = (read_all(ours), read_all(reference));
        let flat = |bs: &[RecordBatch]| -> Vec<u16> {
            bs.iter()
                .flat_map(|b| {
                    let l = b.column(0).as_fixed_size_list().clone();
                    let v = l.values().as_primitive::<Float16Type>().clone();
                    v.values().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                })
                .collect()
        };
        let (fa, fb) = (flat(&a), flat(&b));
        assert_eq!(fa.len(), 5000 * d);
        assert_eq!(fa, fb);
        assert_eq!(a[0].schema(), b[0].schema());
    }

    #[test]
    fn a_closed_row_group_hands_its_chunk_buffers_to_the_next() {
        let d = 300;
        let (schema, props) = one_hook(d, Compression::UNCOMPRESSED);
        let mut encoder =
            RowGroupEncoder::try_new(Vec::new(), schema.clone(), props, 1000).unwrap();
        encoder.write(batch(&schema, 0, 1000, d)).unwrap();
        let kept = encoder.spare_chunk_capacities();
        assert_eq!(kept.len(), 1);
        assert!(kept[0] >= 1000 * d * 2, "{kept:?}"); // the whole uncompressed chunk
        encoder.write(batch(&schema, 1000, 500, d)).unwrap();
        assert!(encoder.spare_chunk_capacities().is_empty()); // taken by the open row group
        assert_eq!(
            read_all(encoder.finish().unwrap())
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            1500
        );
    }

    #[test]
    fn level_runs_are_uleb128_headers_with_one_value_byte() {
        let mut body = vec![];
        page_levels(&mut body, 2, 3, 1);
        // rep: 4-byte length 8, then per row (1 × 0), (2 × 1); def: length 3, then (6 × 1).
        assert_eq!(
            body,
            vec![8, 0, 0, 0, 2, 0, 4, 1, 2, 0, 4, 1, 2, 0, 0, 0, 12, 1]
        );
        let mut long = vec![];
        rle_run(&mut long, 300, 1);
        assert_eq!(long, vec![0xd8, 0x04, 1]); // 600 = 0b100_1011000
    }
}
