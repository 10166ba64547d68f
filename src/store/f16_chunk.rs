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

use arrow_array::cast::AsArray;
use arrow_array::types::Float16Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Uncompressed value bytes per data page (parquet-rs's default page size limit).
const PAGE_BYTES: usize = 1 << 20;

/// An encoded column chunk, ready for `SerializedRowGroupWriter::append_column`.
pub(crate) struct RawChunk {
    pub bytes: Bytes,
    pub close: ColumnCloseResult,
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

/// Whether `column` (one arrow column of a row group) can take the fast path: a fixed-size list
/// of Float16 without nulls, in a leaf column with one repetition level, and a codec we handle.
pub(crate) fn applies(column: &ArrayRef, descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let DataType::FixedSizeList(item, _) = column.data_type() else {
        return false;
    };
    *item.data_type() == DataType::Float16
        && column.null_count() == 0
        && column.as_fixed_size_list().values().null_count() == 0
        && descr.max_rep_level() == 1
        && (1..=255).contains(&descr.max_def_level())
        && codec(props, descr).is_some()
}

/// Encodes the row group's slices `parts` of one f16 list column (every part passed [`applies`]).
pub(crate) fn encode(
    parts: &[ArrayRef],
    descr: ColumnDescPtr,
    props: &WriterProperties,
) -> Result<RawChunk> {
    let level = codec(props, &descr)
        .ok_or_else(|| ParquetError::General("f16 chunk: unsupported codec".into()))?;
    let d = match parts.first().map(|p| p.data_type()) {
        Some(DataType::FixedSizeList(_, d)) => (*d).max(1) as usize,
        _ => 1,
    };
    // The values' bytes in row order: PLAIN is little-endian, like arrow's buffers here.
    let mut values: Vec<u8> = Vec::new();
    for part in parts {
        let list = part.as_fixed_size_list();
        let f16 = list.values().as_primitive::<Float16Type>().values();
        if cfg!(target_endian = "little") {
            values.extend_from_slice(f16.inner().as_slice());
        } else {
            f16.iter()
                .for_each(|v| values.extend_from_slice(&v.to_le_bytes()));
        }
    }
    let rows = values.len() / (2 * d);
    let rows_per_page = (PAGE_BYTES / (2 * d)).max(1);

    let mut sink = TrackedWrite::new(Vec::new());
    let mut offsets = OffsetIndexBuilder::new();
    let (mut compressed, mut uncompressed) = (0i64, 0i64);
    {
        let mut writer = SerializedPageWriter::new(&mut sink);
        let mut body = Vec::with_capacity(PAGE_BYTES + 64);
        for first in (0..rows).step_by(rows_per_page) {
            let n_rows = rows_per_page.min(rows - first);
            body.clear();
            page_levels(&mut body, n_rows, d, descr.max_def_level() as u8);
            body.extend_from_slice(&values[first * 2 * d..(first + n_rows) * 2 * d]);
            let buf = match level {
                Some(level) => Bytes::from(
                    zstd::bulk::compress(&body, level)
                        .map_err(|e| ParquetError::General(format!("zstd: {e}")))?,
                ),
                None => Bytes::copy_from_slice(&body),
            };
            let page = Page::DataPage {
                buf,
                num_values: (n_rows * d) as u32,
                encoding: Encoding::PLAIN,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            let spec = writer.write_page(CompressedPage::new(page, body.len()))?;
            offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            offsets.append_row_count(n_rows as i64);
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
        }
        writer.close()?;
    }
    let compression = match level {
        Some(l) => Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(l)
                .map_err(|e| ParquetError::General(e.to_string()))?,
        ),
        None => Compression::UNCOMPRESSED,
    };
    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(compression)
        .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
        .set_num_values((rows * d) as i64)
        .set_total_compressed_size(compressed)
        .set_total_uncompressed_size(uncompressed)
        .set_data_page_offset(0)
        .build()?;
    let bytes = Bytes::from(sink.into_inner()?);
    Ok(RawChunk {
        close: ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(offsets.build()),
        },
        bytes,
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
    use parquet::basic::ZstdLevel;

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
        let item = Arc::new(Field::new("item", DataType::Float16, false));
        let field = Field::new("h", DataType::FixedSizeList(item, d as i32), false);
        let schema = Arc::new(Schema::new(vec![field]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_dictionary_enabled(false)
            .build();
        let batches: Vec<RecordBatch> = (0..5).map(|i| batch(&schema, i * 1000, 1000, d)).collect();

        let mut ours =
            RowGroupEncoder::try_new(Vec::new(), schema.clone(), props.clone(), 4096, d * 2)
                .unwrap();
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
