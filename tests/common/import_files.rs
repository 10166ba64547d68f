//! Small input files in the formats `unravel import` reads, written without Python: `.npy` by
//! hand, `.npz` with the zip crate, `.safetensors` with the safetensors crate, parquet and Arrow
//! IPC with arrow; and the folder layout SAELens's CacheActivationsRunner writes.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Int32Builder, ListBuilder};
use arrow_array::{ArrayRef, RecordBatch};

/// A deterministic test value of row `r`, component `j`, in [-0.5, 0.5).
pub fn value(r: usize, j: usize) -> f32 {
    ((r * 31 + j * 7) % 97) as f32 / 97.0 - 0.5
}

/// `rows × d` values, row-major.
pub fn values(rows: usize, d: usize) -> Vec<f32> {
    (0..rows * d).map(|i| value(i / d, i % d)).collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The bytes of a version-1 `.npy` file.
pub fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    std::fs::write(path, npy_bytes(descr, shape, data)).unwrap();
}

/// An `.npz` holding `arrays` (name, npy bytes), stored or deflated.
pub fn write_npz(path: &Path, arrays: &[(&str, Vec<u8>)]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in arrays {
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A safetensors file of f32 tensors (name, shape, values).
pub fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, v)| {
            let bytes: &'static [u8] = Box::leak(f32_bytes(v).into_boxed_slice());
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (n.to_string(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// One float column of `rows` rows of `d` (fixed_size_list, or list when `fixed` is false).
pub fn float_list(rows: &[Vec<f32>], fixed: Option<i32>) -> ArrayRef {
    match fixed {
        Some(d) => {
            let mut b = FixedSizeListBuilder::new(Float32Builder::new(), d);
            for r in rows {
                b.values().append_slice(r);
                b.append(true);
            }
            Arc::new(b.finish())
        }
        None => {
            let mut b = ListBuilder::new(Float32Builder::new());
            for r in rows {
                b.values().append_slice(r);
                b.append(true);
            }
            Arc::new(b.finish())
        }
    }
}

/// A parquet file of the given columns.
pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The folder SAELens's CacheActivationsRunner writes (HF datasets `save_to_disk`): one Arrow
/// IPC stream per entry of `files` (sequences per file), a column `hook` of `[ctx, d]` f32 per
/// sequence (HF Array2D: list of lists), `token_ids` (fixed_size_list<int32>[ctx]), and
/// `state.json` listing the files. Row r of the whole dataset holds `value(r, j)`, token id r.
pub fn write_saelens_cache(dir: &Path, hook: &str, files: &[usize], ctx: usize, d: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut names = vec![];
    let mut row = 0;
    for (i, &seqs) in files.iter().enumerate() {
        let mut acts = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
        let mut ids = FixedSizeListBuilder::new(Int32Builder::new(), ctx as i32);
        for _ in 0..seqs {
            for _ in 0..ctx {
                let v: Vec<f32> = (0..d).map(|j| value(row, j)).collect();
                acts.values().values().append_slice(&v);
                acts.values().append(true);
                ids.values().append_value(row as i32);
                row += 1;
            }
            acts.append(true);
            ids.append(true);
        }
        let batch = RecordBatch::try_from_iter([
            (hook, Arc::new(acts.finish()) as ArrayRef),
            ("token_ids", Arc::new(ids.finish()) as ArrayRef),
        ])
        .unwrap();
        let name = format!("data-{i:05}-of-{:05}.arrow", files.len());
        let file = std::fs::File::create(dir.join(&name)).unwrap();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(file, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        names.push(serde_json::json!({ "filename": name }));
    }
    let state = serde_json::json!({ "_data_files": names, "_fingerprint": "test", "_split": null });
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    std::fs::write(dir.join("dataset_info.json"), "{}").unwrap();
}
