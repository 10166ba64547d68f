//! The shard schema (column names, Arrow types) and the conversions between caller f32 values and
//! the storage dtypes. Defined once here; the writer, the reader and the docs follow it.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::types::{Float16Type, Float32Type, UInt16Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, PrimitiveArray};
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use super::error::ColumnError;
use super::stats::RunningStats;

/// Column of the context id (UInt64).
pub(crate) const CONTEXT_ID: &str = "context_id";
/// Column of the position within the context (UInt32).
pub(crate) const POSITION: &str = "position";
/// Column of the token id (UInt32).
pub(crate) const TOKEN_ID: &str = "token_id";
/// Column of the token string (Utf8).
pub(crate) const TOKEN: &str = "token";
/// Column flagging special-token rows (Boolean).
pub(crate) const SPECIAL: &str = "special";
/// The fixed columns, in file order; label and hook columns follow.
pub(crate) const FIXED_COLUMNS: [&str; 5] = [CONTEXT_ID, POSITION, TOKEN_ID, TOKEN, SPECIAL];
/// Name of the list item field inside a hook column (Arrow's default, what pyarrow writes too).
pub(crate) const ITEM: &str = "item";

/// Arrow field-metadata key on every hook column: `float16`, `bfloat16` or `float32`.
pub const DTYPE_METADATA_KEY: &str = "unravel.dtype";

/// How a hook's values are stored on disk. Callers always hand over and get back f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    /// IEEE half precision: Arrow Float16 (parquet FIXED_LEN_BYTE_ARRAY(2), logical FLOAT16).
    F16,
    /// bfloat16 bit patterns in Arrow UInt16 (no bfloat16 type exists in Arrow or Parquet).
    Bf16,
    /// Arrow Float32.
    F32,
}

impl StorageDtype {
    /// Bytes per value on disk (before compression).
    pub fn bytes(self) -> usize {
        match self {
            StorageDtype::F16 | StorageDtype::Bf16 => 2,
            StorageDtype::F32 => 4,
        }
    }

    /// The value written under [`DTYPE_METADATA_KEY`].
    pub fn metadata_name(self) -> &'static str {
        match self {
            StorageDtype::F16 => "float16",
            StorageDtype::Bf16 => "bfloat16",
            StorageDtype::F32 => "float32",
        }
    }

    /// The Arrow type of the list items.
    pub(crate) fn item_type(self) -> DataType {
        match self {
            StorageDtype::F16 => DataType::Float16,
            StorageDtype::Bf16 => DataType::UInt16,
            StorageDtype::F32 => DataType::Float32,
        }
    }

    /// The largest finite magnitude the dtype holds.
    pub(crate) fn max_finite(self) -> f32 {
        match self {
            StorageDtype::F16 => f16::MAX.to_f32(),
            StorageDtype::Bf16 => bf16::MAX.to_f32(),
            StorageDtype::F32 => f32::MAX,
        }
    }
}

impl std::fmt::Display for StorageDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageDtype::F16 => "f16",
            StorageDtype::Bf16 => "bf16",
            StorageDtype::F32 => "f32",
        })
    }
}

impl FromStr for StorageDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f16" | "float16" => Ok(StorageDtype::F16),
            "bf16" | "bfloat16" => Ok(StorageDtype::Bf16),
            "f32" | "float32" => Ok(StorageDtype::F32),
            other => Err(format!(
                "unknown storage dtype {other:?}; use f16, bf16 or f32"
            )),
        }
    }
}

/// One stored hook: its TransformerLens name, width and storage dtype.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookInfo {
    /// Hook name, also the column name (e.g. `blocks.3.hook_resid_post`).
    pub name: String,
    /// Values per row.
    pub d: usize,
    /// Storage dtype.
    pub dtype: StorageDtype,
}

impl std::fmt::Display for HookInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (d={}, {})", self.name, self.d, self.dtype)
    }
}

/// The list-item field of a hook column.
fn item_field(dtype: StorageDtype) -> Arc<Field> {
    Arc::new(Field::new(ITEM, dtype.item_type(), false))
}

/// The Arrow field of a hook column, with its dtype metadata.
pub(crate) fn hook_field(hook: &HookInfo) -> Field {
    let data_type = DataType::FixedSizeList(item_field(hook.dtype), hook.d as i32);
    let metadata = HashMap::from([(
        DTYPE_METADATA_KEY.to_string(),
        hook.dtype.metadata_name().to_string(),
    )]);
    Field::new(&hook.name, data_type, false).with_metadata(metadata)
}

/// The full shard schema: fixed columns, then labels, then hooks.
pub(crate) fn shard_schema(hooks: &[HookInfo], labels: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new(CONTEXT_ID, DataType::UInt64, false),
        Field::new(POSITION, DataType::UInt32, false),
        Field::new(TOKEN_ID, DataType::UInt32, false),
        Field::new(TOKEN, DataType::Utf8, false),
        Field::new(SPECIAL, DataType::Boolean, false),
    ];
    fields.extend(labels.iter().map(|l| Field::new(l, DataType::Utf8, true)));
    fields.extend(hooks.iter().map(hook_field));
    Arc::new(Schema::new(fields))
}

/// Why a hook's values could not become its Arrow column.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The first value the storage dtype cannot hold (NaN, ±inf, or beyond its largest finite).
    Unstorable {
        row: usize,
        value: f32,
    },
    Arrow(ArrowError),
}

/// Converts `rows × d` f32 values into the hook's Arrow column in one pass, row by row: each row
/// is checked against the dtype's range, added to `stats` unless its `skip` flag is set (special
/// tokens), and converted while it is still in cache. Separate passes read every value from
/// memory three times, and the writer thread's time is what this saves. The loop is compiled
/// for AVX-512 and AVX2 too and picked at run time ([`crate::kernels::simd`]).
pub(crate) fn encode_hook(
    hook: &HookInfo,
    values: &[f32],
    skip: &[bool],
    stats: &mut RunningStats,
    storage: MutableBuffer,
) -> Result<ArrayRef, EncodeError> {
    crate::kernels::simd::dispatch!(
        encode_hook_avx512,
        encode_hook_avx2,
        encode_hook_body,
        (hook, values, skip, stats, storage)
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn encode_hook_avx512(
    hook: &HookInfo,
    values: &[f32],
    skip: &[bool],
    stats: &mut RunningStats,
    storage: MutableBuffer,
) -> Result<ArrayRef, EncodeError> {
    encode_hook_body(hook, values, skip, stats, storage)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn encode_hook_avx2(
    hook: &HookInfo,
    values: &[f32],
    skip: &[bool],
    stats: &mut RunningStats,
    storage: MutableBuffer,
) -> Result<ArrayRef, EncodeError> {
    encode_hook_body(hook, values, skip, stats, storage)
}

#[inline(always)]
fn encode_hook_body(
    hook: &HookInfo,
    values: &[f32],
    skip: &[bool],
    stats: &mut RunningStats,
    storage: MutableBuffer,
) -> Result<ArrayRef, EncodeError> {
    let d = hook.d.max(1);
    let max = hook.dtype.max_finite();
    // The values go into `storage` (a previous batch's, when the caller has one): a fresh
    // allocation per batch and hook is zeroed page by page by the kernel, then unmapped. Every
    // byte is overwritten below, so storage of the right length is not cleared first.
    let mut buf = storage;
    let len = values.len() * hook.dtype.bytes();
    if buf.len() != len {
        buf.clear();
        buf.resize(len, 0);
    }
    match hook.dtype {
        StorageDtype::F32 => {
            let out = buf.typed_data_mut::<f32>();
            each_row(values, d, max, skip, stats, |r, row| {
                out[r * d..r * d + row.len()].copy_from_slice(row)
            })?
        }
        StorageDtype::F16 => {
            let half = buf.typed_data_mut::<f16>();
            each_row(values, d, max, skip, stats, |r, row| {
                half[r * d..r * d + row.len()].convert_from_f32_slice(row)
            })?
        }
        StorageDtype::Bf16 => {
            let bits = buf.typed_data_mut::<u16>();
            each_row(values, d, max, skip, stats, |r, row| {
                bits[r * d..r * d + row.len()]
                    .reinterpret_cast_mut::<bf16>()
                    .convert_from_f32_slice(row)
            })?
        }
    }
    let stored = Buffer::from(buf);
    let items: ArrayRef = match hook.dtype {
        StorageDtype::F32 => Arc::new(PrimitiveArray::<Float32Type>::new(stored.into(), None)),
        StorageDtype::F16 => Arc::new(PrimitiveArray::<Float16Type>::new(stored.into(), None)),
        StorageDtype::Bf16 => Arc::new(PrimitiveArray::<UInt16Type>::new(stored.into(), None)),
    };
    let list = FixedSizeListArray::try_new(item_field(hook.dtype), hook.d as i32, items, None)
        .map_err(EncodeError::Arrow)?;
    Ok(Arc::new(list))
}

/// For each `d`-wide row of `values`: the range check, the statistics, then `store`. `store`
/// is generic, not `dyn`, so it is inlined into (and vectorised with) the caller's instruction
/// set.
#[inline(always)]
fn each_row(
    values: &[f32],
    d: usize,
    max: f32,
    skip: &[bool],
    stats: &mut RunningStats,
    mut store: impl FnMut(usize, &[f32]),
) -> Result<(), EncodeError> {
    for (r, row) in values.chunks(d).enumerate() {
        // No early exit: the whole row is one vectorised reduction.
        if row.iter().fold(false, |bad, &x| bad | unstorable(x, max)) {
            let value = row.iter().copied().find(|&x| unstorable(x, max));
            return Err(EncodeError::Unstorable {
                row: r,
                value: value.unwrap_or(f32::NAN),
            });
        }
        if !skip.get(r).copied().unwrap_or(false) {
            stats.push_row(row);
        }
        store(r, row);
    }
    Ok(())
}

/// Whether a dtype whose largest finite magnitude is `max` cannot hold `x` (NaN, ±inf, overflow).
#[inline(always)]
fn unstorable(x: f32, max: f32) -> bool {
    x.is_nan() | (x.abs() > max)
}

/// Appends the rows of a hook column whose `keep` flag is true (all rows when `keep` is None) to
/// `out` as f32. Converts whole runs of rows at once: no per-element Arrow accessors.
pub(crate) fn decode_hook(
    column: &dyn Array,
    hook: &HookInfo,
    keep: Option<&[bool]>,
    out: &mut Vec<f32>,
) -> Result<(), ColumnError> {
    let name = || hook.name.clone();
    let list = column
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| ColumnError::NotAList {
            column: name(),
            found: column.data_type().clone(),
            item: hook.dtype.item_type(),
            d: hook.d,
        })?;
    let d = hook.d;
    if list.value_length() as usize != d || list.value_type() != hook.dtype.item_type() {
        return Err(ColumnError::Shape {
            column: name(),
            found: list.data_type().clone(),
            item: hook.dtype.item_type(),
            d,
        });
    }
    let values = list.values();
    if values.len() != list.len() * d || values.null_count() != 0 {
        return Err(ColumnError::Values { column: name() });
    }
    let any = values.as_any();
    // The downcasts cannot fail after the type check above; a mismatch is reported, not unwrapped.
    let bad = || ColumnError::ItemType { column: name() };
    match hook.dtype {
        StorageDtype::F32 => {
            let src = any
                .downcast_ref::<PrimitiveArray<Float32Type>>()
                .ok_or_else(bad)?;
            copy_rows(src.values(), d, keep, out, |s, o| o.copy_from_slice(s));
        }
        StorageDtype::F16 => {
            let src = any
                .downcast_ref::<PrimitiveArray<Float16Type>>()
                .ok_or_else(bad)?;
            copy_rows(src.values(), d, keep, out, |s, o| s.convert_to_f32_slice(o));
        }
        StorageDtype::Bf16 => {
            let src = any
                .downcast_ref::<PrimitiveArray<UInt16Type>>()
                .ok_or_else(bad)?;
            let bits: &[u16] = src.values();
            let src: &[bf16] = bits.reinterpret_cast();
            copy_rows(src, d, keep, out, |s, o| s.convert_to_f32_slice(o));
        }
    }
    Ok(())
}

/// Copies the kept rows of `src` (`rows × d`) to the end of `out`, one `convert` call per run of
/// consecutive kept rows.
fn copy_rows<T>(
    src: &[T],
    d: usize,
    keep: Option<&[bool]>,
    out: &mut Vec<f32>,
    convert: impl Fn(&[T], &mut [f32]),
) {
    let rows = src.len() / d.max(1);
    let mut push = |from: usize, to: usize| {
        let start = out.len();
        out.resize(start + (to - from) * d, 0.0);
        convert(&src[from * d..to * d], &mut out[start..]);
    };
    let Some(keep) = keep else {
        push(0, rows);
        return;
    };
    let mut row = 0;
    while row < rows {
        if !keep[row] {
            row += 1;
            continue;
        }
        let run_start = row;
        while row < rows && keep[row] {
            row += 1;
        }
        push(run_start, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(dtype: StorageDtype) -> HookInfo {
        HookInfo {
            name: "h".into(),
            d: 3,
            dtype,
        }
    }

    #[test]
    fn encode_decode_round_trip_with_mask() {
        let values = [0.5f32, -1.25, 3.0, 10.0, 11.0, 12.0, -7.0, 0.0, 1.0];
        let keep = [true, false, true];
        for dtype in [StorageDtype::F16, StorageDtype::Bf16, StorageDtype::F32] {
            let h = hook(dtype);
            // Storage reused from a longer batch or one of the same size: stale bytes must not
            // leak into the column.
            for stale in [100, values.len() * dtype.bytes()] {
                let stale = MutableBuffer::from(vec![0xffu8; stale]);
                let column =
                    encode_hook(&h, &values, &[], &mut RunningStats::new(3), stale).unwrap();
                let mut out = vec![];
                decode_hook(column.as_ref(), &h, Some(&keep), &mut out).unwrap();
                // All values are exactly representable in every dtype.
                assert_eq!(out, [0.5, -1.25, 3.0, -7.0, 0.0, 1.0], "{dtype}");
            }
        }
    }

    #[test]
    fn values_a_dtype_cannot_hold_are_refused_with_their_row() {
        let rows = |bad: f32| [0.0f32, 1.0, 2.0, 3.0, bad, 5.0, 6.0, 7.0, 8.0];
        let refused = |dtype, bad| match encode_hook(
            &hook(dtype),
            &rows(bad),
            &[],
            &mut RunningStats::new(3),
            MutableBuffer::new(0),
        ) {
            Err(EncodeError::Unstorable { row, value }) => Some((row, value.to_bits())),
            _ => None,
        };
        for dtype in [StorageDtype::F16, StorageDtype::Bf16, StorageDtype::F32] {
            assert_eq!(
                refused(dtype, f32::NAN),
                Some((1, f32::NAN.to_bits())),
                "{dtype}"
            );
            let inf = f32::NEG_INFINITY;
            assert_eq!(refused(dtype, inf), Some((1, inf.to_bits())), "{dtype}");
            assert_eq!(refused(dtype, 65504.0), None, "{dtype}");
        }
        assert_eq!(
            refused(StorageDtype::F16, 65520.0),
            Some((1, 65520f32.to_bits()))
        );
        assert_eq!(refused(StorageDtype::Bf16, 65520.0), None);
        assert_eq!(
            refused(StorageDtype::Bf16, f32::MAX),
            Some((1, f32::MAX.to_bits()))
        );
        assert_eq!(refused(StorageDtype::F32, f32::MAX), None);
    }

    #[test]
    fn statistics_count_unskipped_rows_at_full_precision() {
        // 1 + 2^-12 rounds to 1.0 in f16: the mean must still see it exactly.
        let x = 1.0 + 2f32.powi(-12);
        let values = [x, 2.0, 3.0, 100.0, 100.0, 100.0, 3.0, 4.0, 0.0];
        let mut stats = RunningStats::new(3);
        encode_hook(
            &hook(StorageDtype::F16),
            &values,
            &[false, true, false],
            &mut stats,
            MutableBuffer::new(0),
        )
        .unwrap();
        let s = stats.stats();
        assert_eq!(s.count, 2);
        assert_eq!(s.mean, [(x as f64 + 3.0) / 2.0, 3.0, 1.5]);
        let norms = ((x as f64).powi(2) + 13.0).sqrt() + 5.0;
        assert!((s.mean_norm - norms / 2.0).abs() < 1e-12, "{}", s.mean_norm);
    }

    #[test]
    fn decode_refuses_a_wrong_width() {
        let column = encode_hook(
            &hook(StorageDtype::F32),
            &[0.0; 6],
            &[],
            &mut RunningStats::new(3),
            MutableBuffer::new(0),
        )
        .unwrap();
        let wide = HookInfo {
            d: 2,
            ..hook(StorageDtype::F32)
        };
        let err = decode_hook(column.as_ref(), &wide, None, &mut vec![]).unwrap_err();
        assert!(matches!(err, ColumnError::Shape { d: 2, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "column h is FixedSizeList(3 x non-null Float32), but the manifest says fixed_size_list<Float32>[2]"
        );
    }

    #[test]
    fn dtype_names_parse_and_serialise() {
        assert_eq!("bf16".parse::<StorageDtype>(), Ok(StorageDtype::Bf16));
        assert!("f8".parse::<StorageDtype>().is_err());
        assert_eq!(
            serde_json::to_string(&StorageDtype::F16).unwrap(),
            "\"f16\""
        );
    }
}
