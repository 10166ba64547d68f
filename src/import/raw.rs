//! Plain arrays on disk: `.npy`, a stored (uncompressed) `.npz` entry, a `.safetensors` tensor.
//! Each is a little-endian, row-major block of numbers at some offset of a file; the header
//! parsed here says where, its dtype and its shape. [`RawReader`] then streams rows from it with
//! plain reads (no mmap), so memory stays bounded whatever the file's size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Chunk, ImportError, SourceDtype};

/// A block of numbers inside a file: `shape` is `[rows, d]` or `[contexts, ctx, d]`.
#[derive(Debug, Clone)]
pub(crate) struct RawArray {
    pub path: PathBuf,
    /// The array's name inside the file (npz entry, safetensors tensor), for messages and as the
    /// default hook name.
    pub name: Option<String>,
    pub offset: u64,
    pub dtype: SourceDtype,
    pub shape: Vec<usize>,
}

impl RawArray {
    /// Values per row (the last axis).
    pub fn d(&self) -> usize {
        *self.shape.last().unwrap_or(&0)
    }

    /// Rows per context: the middle axis of a 3-D array, else 1.
    pub fn ctx(&self) -> usize {
        if self.shape.len() == 3 {
            self.shape[1]
        } else {
            1
        }
    }

    /// All rows.
    pub fn rows(&self) -> u64 {
        self.shape[..self.shape.len() - 1]
            .iter()
            .map(|&n| n as u64)
            .product()
    }

    /// Refuses shapes other than 2-D or 3-D with a non-empty last axis.
    fn check_shape(self) -> Result<RawArray, ImportError> {
        if !(2..=3).contains(&self.shape.len()) || self.d() == 0 || self.ctx() == 0 {
            let what = self
                .name
                .as_deref()
                .map(|n| format!("{n} "))
                .unwrap_or_default();
            return Err(ImportError::input(
                &self.path,
                format!(
                    "array {what}has shape {:?}; import takes [rows, d] or [contexts, ctx, d]",
                    self.shape
                ),
            ));
        }
        Ok(self)
    }
}

/// Parses the header of a `.npy` file (or of an npy stream starting at `base` inside a file).
pub(crate) fn npy(path: &Path, base: u64, name: Option<String>) -> Result<RawArray, ImportError> {
    let bad = |m: String| ImportError::input(path, m);
    let mut f = File::open(path).map_err(|e| ImportError::io(path, e))?;
    f.seek(SeekFrom::Start(base))
        .map_err(|e| ImportError::io(path, e))?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head)
        .map_err(|_| bad("too short for a .npy file".into()))?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
        v => {
            return Err(bad(format!(
                ".npy version {v} is not supported (1, 2, 3 are)"
            )))
        }
    };
    let mut text = vec![0u8; len];
    f.seek(SeekFrom::Start(base + start as u64))
        .and_then(|_| f.read_exact(&mut text))
        .map_err(|_| bad("truncated .npy header".into()))?;
    let text = String::from_utf8_lossy(&text);
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')')? + 1
        } else {
            rest.find([',', '}']).unwrap_or(rest.len())
        };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or_else(|| bad("no 'descr' in the .npy header".into()))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = match descr {
        "<f2" => SourceDtype::F16,
        "<f4" => SourceDtype::F32,
        "<f8" => SourceDtype::F64,
        other => {
            return Err(bad(format!(
                "dtype {other} is not a little-endian float (f2, f4, f8); convert with \
                 arr.astype(np.float32)"
            )))
        }
    };
    if field("fortran_order").as_deref() == Some("True") {
        return Err(bad(
            "the array is in Fortran order; save np.ascontiguousarray(arr)".into(),
        ));
    }
    let shape = field("shape").ok_or_else(|| bad("no 'shape' in the .npy header".into()))?;
    let shape: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("unreadable shape {shape}")))?;
    RawArray {
        path: path.to_path_buf(),
        name,
        offset: base + (start + len) as u64,
        dtype,
        shape,
    }
    .check_shape()
}

/// The array `key` of an `.npz` archive (or its only array when `key` is None). Only stored
/// entries (`np.savez`) can be streamed in place; `np.savez_compressed` archives are refused.
pub(crate) fn npz(path: &Path, key: Option<&str>) -> Result<RawArray, ImportError> {
    let bad = |m: String| ImportError::input(path, m);
    let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a .npz archive: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let name = match key {
        Some(k) if names.iter().any(|n| n == k) => k.to_string(),
        Some(k) => {
            return Err(bad(format!(
                "--column {k}: no such array; the archive holds {}",
                names.join(", ")
            )))
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(bad(format!(
                "holds {} arrays ({}); choose one with --column",
                names.len(),
                names.join(", ")
            )))
        }
    };
    let entry = zip
        .by_name(&format!("{name}.npy"))
        .map_err(|e| bad(format!("array {name}: {e}")))?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(bad(format!(
            "array {name} is compressed (np.savez_compressed); save with np.savez or np.save to \
             import it"
        )));
    }
    let start = entry
        .data_start()
        .ok_or_else(|| bad(format!("array {name}: no data offset")))?;
    drop(entry);
    npy(path, start, Some(name))
}

/// The tensor `key` of a `.safetensors` file (or its only 2-D/3-D tensor when `key` is None).
pub(crate) fn safetensors(path: &Path, key: Option<&str>) -> Result<RawArray, ImportError> {
    let bad = |m: String| ImportError::input(path, m);
    let mut f = File::open(path).map_err(|e| ImportError::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("too short for a safetensors file".into()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(bad(
            "not a safetensors file (header size out of range)".into()
        ));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("truncated safetensors header".into()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let tensors: Vec<(&String, &serde_json::Value)> = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .collect();
    let rank = |v: &serde_json::Value| v["shape"].as_array().map_or(0, |s| s.len());
    let listing = || {
        tensors
            .iter()
            .map(|(k, v)| format!("{k} {}", v["shape"]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, info) = match key {
        Some(k) => tensors
            .iter()
            .find(|(n, _)| n.as_str() == k)
            .ok_or_else(|| {
                bad(format!(
                    "--column {k}: no such tensor; it holds {}",
                    listing()
                ))
            })?,
        None => {
            let candidates: Vec<_> = tensors
                .iter()
                .filter(|(_, v)| (2..=3).contains(&rank(v)))
                .collect();
            match candidates.as_slice() {
                [one] => *one,
                _ => {
                    return Err(bad(format!(
                        "choose the tensor with --column; it holds {}",
                        listing()
                    )))
                }
            }
        }
    };
    let dtype = match info["dtype"].as_str().unwrap_or("") {
        "F16" => SourceDtype::F16,
        "BF16" => SourceDtype::Bf16,
        "F32" => SourceDtype::F32,
        "F64" => SourceDtype::F64,
        other => {
            return Err(bad(format!(
                "tensor {name} is {other}; import takes float tensors (F16, BF16, F32, F64)"
            )))
        }
    };
    let shape: Vec<usize> = info["shape"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as usize)
                .collect()
        })
        .unwrap_or_default();
    let begin = info["data_offsets"][0]
        .as_u64()
        .ok_or_else(|| bad(format!("tensor {name}: no data_offsets")))?;
    RawArray {
        path: path.to_path_buf(),
        name: Some(name.to_string()),
        offset: 8 + len + begin,
        dtype,
        shape,
    }
    .check_shape()
}

/// Streams the rows of one [`RawArray`] in chunks of whole contexts.
pub(crate) struct RawReader {
    array: RawArray,
    file: std::io::BufReader<File>,
    /// Rows read so far.
    done: u64,
    buf: Vec<u8>,
}

impl RawReader {
    /// Opens the array's file, checking that it holds all the bytes the header promises.
    pub fn open(array: RawArray) -> Result<RawReader, ImportError> {
        let path = array.path.clone();
        let mut f = File::open(&path).map_err(|e| ImportError::io(&path, e))?;
        let need = array.offset + array.rows() * (array.d() * array.dtype.bytes()) as u64;
        let have = f.metadata().map_err(|e| ImportError::io(&path, e))?.len();
        if have < need {
            return Err(ImportError::input(
                &path,
                format!("truncated: the header promises {need} bytes, the file has {have}"),
            ));
        }
        f.seek(SeekFrom::Start(array.offset))
            .map_err(|e| ImportError::io(&path, e))?;
        Ok(RawReader {
            file: std::io::BufReader::with_capacity(1 << 20, f),
            array,
            done: 0,
            buf: vec![],
        })
    }

    pub fn array(&self) -> &RawArray {
        &self.array
    }

    /// The next chunk of at most `max_rows` rows (whole contexts, at least one), or None.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, ImportError> {
        let (total, ctx, d) = (self.array.rows(), self.array.ctx(), self.array.d());
        if self.done >= total {
            return Ok(None);
        }
        let rows = (max_rows / ctx).max(1) * ctx;
        let rows = rows.min((total - self.done) as usize);
        let width = self.array.dtype.bytes();
        self.buf.resize(rows * d * width, 0);
        let path = &self.array.path;
        self.file
            .read_exact(&mut self.buf)
            .map_err(|e| ImportError::io(path, e))?;
        let values = self.array.dtype.decode_le(&self.buf);
        let first_row = self.done;
        self.done += rows as u64;
        Ok(Some(Chunk {
            first_row,
            rows,
            hooks: vec![values],
            token_ids: None,
        }))
    }
}
