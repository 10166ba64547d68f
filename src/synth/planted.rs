//! Planted features: `n_features` random unit directions in `d` dims (superposition when
//! n_features > d); each token activates each feature independently with probability
//! `density`, with an Exponential(1) magnitude; the activation is the sum of the active
//! features' directions times their magnitudes, plus optional Gaussian noise.
//!
//! Output: a dataset folder (`manifest.json` + shards, hook `synthetic`, no special rows) and
//! `truth/ground_truth.safetensors` with `directions [n_features, d]` and `frequencies
//! [n_features]`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, StandardNormal};

use crate::store::{
    Bos, ContextBatch, CorpusInfo, DatasetWriter, HookInfo, Manifest, ModelInfo, StorageDtype,
    WriterOptions,
};

/// The hook (column) name of planted datasets.
pub const SYNTH_HOOK: &str = "synthetic";

/// What to plant.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantedSpec {
    pub n_features: usize,
    pub d: usize,
    /// Probability that a feature is active on a token.
    pub density: f64,
    pub tokens: u64,
    pub seed: u64,
    /// Standard deviation of additive Gaussian noise per dimension.
    pub noise: f32,
    /// Rows per context (grouping only: contexts have no meaning here).
    pub ctx: usize,
    pub shard_tokens: usize,
    pub dtype: StorageDtype,
}

impl PlantedSpec {
    /// A spec with the defaults used in tests: ctx 64, shards of 16384 rows, f32, no noise.
    pub fn new(n_features: usize, d: usize, density: f64, tokens: u64, seed: u64) -> PlantedSpec {
        PlantedSpec {
            n_features,
            d,
            density,
            tokens,
            seed,
            noise: 0.0,
            ctx: 64,
            shard_tokens: 16_384,
            dtype: StorageDtype::F32,
        }
    }
}

/// The ground truth of a planted dataset.
#[derive(Debug, Clone)]
pub struct PlantedTruth {
    /// `[n_features, d]`, unit rows.
    pub directions: Vec<f32>,
    pub frequencies: Vec<f32>,
    pub n_features: usize,
    pub d: usize,
}

pub const TRUTH_DIR: &str = "truth";
pub const TRUTH_FILE: &str = "ground_truth.safetensors";

/// Writes the dataset into `dir` and the truth into `dir/truth/`.
pub fn write_planted(spec: &PlantedSpec, dir: &Path) -> crate::store::Result<PlantedTruth> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let (n, d) = (spec.n_features, spec.d);
    let mut directions: Vec<f32> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
    for row in directions.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let hook = HookInfo {
        name: SYNTH_HOOK.into(),
        d,
        dtype: spec.dtype,
    };
    let manifest = Manifest::new(
        ModelInfo {
            id: format!(
                "synthetic:planted(n={n},d={d},p={},seed={})",
                spec.density, spec.seed
            ),
            revision: None,
            arch: "synthetic".into(),
            config_sha256: String::new(),
            weights_sha256: None,
            random_weights: true,
            seed: Some(spec.seed),
        },
        String::new(),
        vec![hook],
        spec.ctx,
        Bos::None,
        CorpusInfo {
            sources: vec![],
            sha256: String::new(),
            format: "synthetic".into(),
            text_field: None,
            documents: 0,
            empty_documents: 0,
        },
    );
    let options = WriterOptions {
        shard_rows: spec.shard_tokens,
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::create(dir, manifest, options)?;
    let contexts = spec.tokens.div_ceil(spec.ctx as u64);
    let per_batch = 16u64;
    let mut fired = vec![0u64; n];
    let mut c = 0u64;
    while c < contexts {
        let batch = per_batch.min(contexts - c);
        let rows = (batch as usize) * spec.ctx;
        let mut acts = vec![0f32; rows * d];
        for r in 0..rows {
            let out = &mut acts[r * d..(r + 1) * d];
            for (i, f) in fired.iter_mut().enumerate() {
                if rng.random::<f64>() < spec.density {
                    let a: f32 = rng.sample(Exp1);
                    *f += 1;
                    for (o, &w) in out.iter_mut().zip(&directions[i * d..(i + 1) * d]) {
                        *o += a * w;
                    }
                }
            }
            if spec.noise > 0.0 {
                for o in out.iter_mut() {
                    *o += spec.noise * rng.sample::<f32, _>(StandardNormal);
                }
            }
        }
        let ids: Vec<u64> = (c..c + batch)
            .flat_map(|k| std::iter::repeat_n(k, spec.ctx))
            .collect();
        let positions: Vec<u32> = (0..rows).map(|r| (r % spec.ctx) as u32).collect();
        let token_ids = vec![0u32; rows];
        let tokens = vec![String::new(); rows];
        let special = vec![false; rows];
        writer.write_batch(&ContextBatch {
            context_ids: &ids,
            positions: &positions,
            token_ids: &token_ids,
            tokens: &tokens,
            special: &special,
            labels: &[],
            hooks: &[&acts],
        })?;
        c += batch;
    }
    let m = writer.finish()?;
    let total = m.totals.rows.max(1) as f64;
    let frequencies: Vec<f32> = fired.iter().map(|&k| (k as f64 / total) as f32).collect();
    let truth_dir: PathBuf = dir.join(TRUTH_DIR);
    std::fs::create_dir_all(&truth_dir).map_err(|e| crate::store::StoreError::io(&truth_dir, e))?;
    let cpu = Device::Cpu;
    let tensors = [
        (
            "directions",
            Tensor::from_slice(&directions, (n, d), &cpu).map_err(to_store)?,
        ),
        (
            "frequencies",
            Tensor::from_slice(&frequencies, n, &cpu).map_err(to_store)?,
        ),
    ];
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (*k, v)), None)
        .map_err(|e| crate::store::StoreError::Loader(format!("ground truth: {e}")))?;
    let path = truth_dir.join(TRUTH_FILE);
    crate::io::write_atomic(&path, &bytes).map_err(|e| crate::store::StoreError::io(&path, e))?;
    Ok(PlantedTruth {
        directions,
        frequencies,
        n_features: n,
        d,
    })
}

fn to_store(e: candle_core::Error) -> crate::store::StoreError {
    crate::store::StoreError::Loader(format!("ground truth: {e}"))
}

/// Mean over ground-truth directions of the best |cosine| with any of the SAE's decoder rows
/// (`[d_sae, d]`), and the fraction with best cosine ≥ `threshold`.
pub fn mmcs(truth: &[f32], decoder: &[f32], d: usize, threshold: f32) -> (f64, f64) {
    let norms: Vec<f32> = decoder
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12))
        .collect();
    let mut sum = 0f64;
    let mut hit = 0usize;
    let n = truth.len() / d;
    for g in truth.chunks(d) {
        let best = decoder
            .chunks(d)
            .zip(&norms)
            .map(|(r, nr)| crate::sae::model::dot(g, r) / nr)
            .fold(f32::MIN, f32::max);
        sum += best as f64;
        hit += (best >= threshold) as usize;
    }
    (sum / n.max(1) as f64, hit as f64 / n.max(1) as f64)
}
