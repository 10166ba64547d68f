//! `unravel synth --preset/--spec`: rows 0.. of a generated model written as a dataset (hook
//! `synthetic`, contexts of 64 rows, like `unravel synth`), with the truth in
//! `__unravel__/truth/`: `ground_truth.safetensors` (`directions [n, d]`, `bias [d]`,
//! `frequencies` measured on the written rows, `probabilities` (after compensation),
//! `base_probabilities`, `mean_magnitudes`, `std_magnitudes`, `parent` (i64, −1 for none), and
//! with `save_activations` the sparse codes `act_token`, `act_feature`, `act_value`),
//! `spec.toml` (regenerates the model) and `stats.json` (see [`super::stats`]).

use std::path::Path;

use candle_core::{Device, Tensor};

use super::hierarchy::NONE;
use super::model::BenchModel;
use super::stats::Stats;
use crate::store::{
    ContextBatch, DatasetWriter, HookInfo, StorageDtype, StoreError, WriterOptions,
};
use crate::synth::planted::{synthetic_manifest, SYNTH_HOOK};
use crate::synth::truth::{new_truth_dir, TRUTH_FILE};

/// Rows per context (grouping only).
const CTX: usize = 64;

/// How to write.
pub struct WriteOptions {
    pub tokens: u64,
    pub shard_tokens: usize,
    pub dtype: StorageDtype,
    pub save_activations: bool,
}

/// Writes rows `0..tokens` (rounded up to whole contexts of 64) into `dir` and the truth into
/// `dir/__unravel__/truth/`; `progress(rows written)`. Returns the statistics of the written rows.
pub fn write_bench(
    model: &BenchModel,
    opts: &WriteOptions,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> crate::store::Result<Stats> {
    let (n, d) = (model.features(), model.dims());
    let spec = &model.spec;
    let hook = HookInfo {
        name: SYNTH_HOOK.into(),
        d,
        dtype: opts.dtype,
    };
    let id = format!("synthetic:bench({})", spec.fingerprint());
    let manifest = synthetic_manifest(id, spec.seed, hook, CTX);
    let options = WriterOptions {
        shard_rows: opts.shard_tokens,
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::create(dir, manifest, options)?;
    let total = opts.tokens.div_ceil(CTX as u64) * CTX as u64;
    let mut stats = Stats::new(n);
    let mut acts = (vec![], vec![], vec![]);
    let mut start = 0u64;
    while start < total {
        let rows = (64 * CTX as u64).min(total - start) as usize;
        let (x, codes) = model.sample(start, rows);
        for r in 0..rows {
            let (f, v) = codes.row(r);
            let row: Vec<(u32, f32)> = f.iter().copied().zip(v.iter().copied()).collect();
            stats.add(&row, &model.hierarchy);
            if opts.save_activations {
                acts.0
                    .extend(std::iter::repeat_n((start + r as u64) as i64, f.len()));
                acts.1.extend(f.iter().map(|&f| f as i64));
                acts.2.extend_from_slice(v);
            }
        }
        let ids: Vec<u64> = (0..rows as u64).map(|r| (start + r) / CTX as u64).collect();
        let positions: Vec<u32> = (0..rows as u64)
            .map(|r| ((start + r) % CTX as u64) as u32)
            .collect();
        writer.write_batch(&ContextBatch {
            context_ids: &ids,
            positions: &positions,
            token_ids: &vec![0u32; rows],
            tokens: &vec![String::new(); rows],
            special: &vec![false; rows],
            labels: &[],
            hooks: &[&x],
        })?;
        start += rows as u64;
        progress(start);
    }
    writer.finish()?;
    let stats = stats.finish();
    write_truth(model, &stats, acts, &new_truth_dir(dir))?;
    Ok(stats)
}

type Codes = (Vec<i64>, Vec<i64>, Vec<f32>);

fn write_truth(
    model: &BenchModel,
    stats: &Stats,
    acts: Codes,
    dir: &Path,
) -> crate::store::Result<()> {
    let (n, d) = (model.features(), model.dims());
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let bad = |e: candle_core::Error| StoreError::Batch {
        path: dir.to_path_buf(),
        message: format!("ground truth: {e}"),
    };
    let cpu = Device::Cpu;
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let parent: Vec<i64> = model
        .hierarchy
        .parent
        .iter()
        .map(|&p| if p == NONE { -1 } else { p as i64 })
        .collect();
    let mut tensors = vec![
        (
            "directions",
            Tensor::from_slice(&model.directions, (n, d), &cpu),
        ),
        ("bias", Tensor::from_slice(&model.bias, d, &cpu)),
        (
            "frequencies",
            Tensor::from_vec(f32s(&stats.frequencies), n, &cpu),
        ),
        (
            "probabilities",
            Tensor::from_vec(f32s(&model.probabilities), n, &cpu),
        ),
        (
            "base_probabilities",
            Tensor::from_vec(f32s(&model.base_probabilities), n, &cpu),
        ),
        (
            "mean_magnitudes",
            Tensor::from_slice(&model.mean_magnitudes, n, &cpu),
        ),
        (
            "std_magnitudes",
            Tensor::from_slice(&model.std_magnitudes, n, &cpu),
        ),
        ("parent", Tensor::from_vec(parent, n, &cpu)),
    ];
    if !acts.2.is_empty() {
        let nnz = acts.2.len();
        tensors.push(("act_token", Tensor::from_vec(acts.0, nnz, &cpu)));
        tensors.push(("act_feature", Tensor::from_vec(acts.1, nnz, &cpu)));
        tensors.push(("act_value", Tensor::from_vec(acts.2, nnz, &cpu)));
    }
    let tensors = tensors
        .into_iter()
        .map(|(k, t)| t.map(|t| (k, t)).map_err(bad))
        .collect::<crate::store::Result<Vec<_>>>()?;
    let path = dir.join(TRUTH_FILE);
    crate::io::write_safetensors(&path, &tensors).map_err(|e| StoreError::io(&path, e))?;
    let spec_path = dir.join("spec.toml");
    crate::io::write_atomic(&spec_path, model.spec.to_toml().as_bytes())
        .map_err(|e| StoreError::io(&spec_path, e))?;
    let stats_path = dir.join("stats.json");
    let text = serde_json::to_string(stats).map_err(|e| StoreError::io(&stats_path, e.into()))?;
    crate::io::write_atomic(&stats_path, text.as_bytes())
        .map_err(|e| StoreError::io(&stats_path, e))
}
