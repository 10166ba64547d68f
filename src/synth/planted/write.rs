//! Writing a planted-feature dataset: directions drawn, then batches of 16 contexts whose tokens
//! are sums of their active features' directions (plus noise), written as shards; then the truth
//! tensors in `__unravel__/truth/ground_truth.safetensors`.
//!
//! Every draw comes from one seeded generator in a fixed order (the directions, then per token
//! its features and magnitudes and then its noise), so a spec and seed give the same bytes.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::{
    draw_directions, draw_token, max_pairwise_cosine, synthetic_manifest, PlantedSpec,
    PlantedTruth, SYNTH_HOOK, TRUTH_FILE,
};
use crate::store::{ContextBatch, DatasetWriter, HookInfo, Manifest, StoreError, WriterOptions};

/// Writes the dataset into `dir` and the truth into `dir/__unravel__/truth/`.
pub fn write_planted(spec: &PlantedSpec, dir: &Path) -> crate::store::Result<PlantedTruth> {
    write_planted_with_progress(spec, dir, &mut |_| {})
}

/// [`write_planted`], calling `progress(rows written)` after every batch of contexts.
pub fn write_planted_with_progress(
    spec: &PlantedSpec,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> crate::store::Result<PlantedTruth> {
    spec.check().map_err(|e| StoreError::Batch {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let (n, d) = (spec.n_features, spec.d);
    let directions = draw_directions(spec.directions, n, d, &mut rng);
    let probs: Vec<f64> = (0..n).map(|i| spec.probability(i)).collect();
    let importance: Vec<f32> = (0..n)
        .map(|i| spec.importance_decay.powi(i as i32))
        .collect();
    let options = WriterOptions {
        shard_rows: spec.shard_tokens,
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::create(dir, planted_manifest(spec), options)?;
    let contexts = spec.tokens.div_ceil(spec.ctx as u64);
    let mut fired = Fired::new(n, spec.save_activations);
    let mut active = vec![];
    let mut c = 0u64;
    while c < contexts {
        let batch = 16u64.min(contexts - c);
        let rows = (batch as usize) * spec.ctx;
        let mut acts = vec![0f32; rows * d];
        for out in acts.chunks_mut(d) {
            draw_token(spec, &probs, &importance, &mut rng, &mut active);
            fired.add(&active, &directions, out);
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
        writer.write_batch(&ContextBatch {
            context_ids: &ids,
            positions: &positions,
            token_ids: &vec![0u32; rows],
            tokens: &vec![String::new(); rows],
            special: &vec![false; rows],
            labels: &[],
            hooks: &[&acts],
        })?;
        c += batch;
        progress(c * spec.ctx as u64);
    }
    let m = writer.finish()?;
    let total = m.totals.rows.max(1) as f64;
    let frequencies: Vec<f32> = fired
        .counts
        .iter()
        .map(|&k| (k as f64 / total) as f32)
        .collect();
    let max_cosine = max_pairwise_cosine(&directions, d);
    let truth = PlantedTruth {
        directions,
        frequencies,
        n_features: n,
        d,
        max_cosine,
    };
    write_truth(dir, &truth, &probs, &importance, fired)?;
    Ok(truth)
}

/// The manifest of a planted-feature dataset: hook `synthetic` in the spec's dtype.
fn planted_manifest(spec: &PlantedSpec) -> Manifest {
    let (n, d) = (spec.n_features, spec.d);
    let hook = HookInfo {
        name: SYNTH_HOOK.into(),
        d,
        dtype: spec.dtype,
    };
    synthetic_manifest(
        format!(
            "synthetic:planted(n={n},d={d},p={},seed={})",
            spec.density, spec.seed
        ),
        spec.seed,
        hook,
        spec.ctx,
    )
}

/// How often each feature fired, and (when saved) every non-zero activation.
struct Fired {
    counts: Vec<u64>,
    save: bool,
    /// The index of the next token.
    token: i64,
    act_token: Vec<i64>,
    act_feature: Vec<i64>,
    act_value: Vec<f32>,
}

impl Fired {
    fn new(n_features: usize, save: bool) -> Fired {
        Fired {
            counts: vec![0; n_features],
            save,
            token: 0,
            act_token: vec![],
            act_feature: vec![],
            act_value: vec![],
        }
    }

    /// Adds the `active` (feature, magnitude) pairs of the next token to its row `out` (the
    /// magnitudes times the features' `directions`), and counts them.
    fn add(&mut self, active: &[(usize, f32)], directions: &[f32], out: &mut [f32]) {
        let d = out.len();
        for &(f, a) in active {
            self.counts[f] += 1;
            for (o, &w) in out.iter_mut().zip(&directions[f * d..(f + 1) * d]) {
                *o += a * w;
            }
            if self.save {
                self.act_token.push(self.token);
                self.act_feature.push(f as i64);
                self.act_value.push(a);
            }
        }
        self.token += 1;
    }
}

/// Writes `__unravel__/truth/ground_truth.safetensors`: directions, measured frequencies, specified
/// probabilities, importance, and the saved activations when there are any.
fn write_truth(
    dir: &Path,
    truth: &PlantedTruth,
    probs: &[f64],
    importance: &[f32],
    fired: Fired,
) -> crate::store::Result<()> {
    let (n, d) = (truth.n_features, truth.d);
    let truth_dir: PathBuf = super::new_truth_dir(dir);
    std::fs::create_dir_all(&truth_dir).map_err(|e| StoreError::io(&truth_dir, e))?;
    let cpu = Device::Cpu;
    let e = |x: candle_core::Error| store_err(&truth_dir, x);
    let probs32: Vec<f32> = probs.iter().map(|&p| p as f32).collect();
    let mut tensors = vec![
        (
            "directions",
            Tensor::from_slice(&truth.directions, (n, d), &cpu).map_err(e)?,
        ),
        (
            "frequencies",
            Tensor::from_slice(&truth.frequencies, n, &cpu).map_err(e)?,
        ),
        (
            "probabilities",
            Tensor::from_slice(&probs32, n, &cpu).map_err(e)?,
        ),
        (
            "importance",
            Tensor::from_slice(importance, n, &cpu).map_err(e)?,
        ),
    ];
    if fired.save {
        let nnz = fired.act_value.len();
        tensors.push((
            "act_token",
            Tensor::from_vec(fired.act_token, nnz, &cpu).map_err(e)?,
        ));
        tensors.push((
            "act_feature",
            Tensor::from_vec(fired.act_feature, nnz, &cpu).map_err(e)?,
        ));
        tensors.push((
            "act_value",
            Tensor::from_vec(fired.act_value, nnz, &cpu).map_err(e)?,
        ));
    }
    let path = truth_dir.join(TRUTH_FILE);
    crate::io::write_safetensors(&path, &tensors).map_err(|x| StoreError::io(&path, x))
}

fn store_err(dir: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Batch {
        path: dir.to_path_buf(),
        message: format!("ground truth: {e}"),
    }
}
