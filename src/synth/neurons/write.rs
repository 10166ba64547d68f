//! Writing a planted-neuron dataset: the neurons drawn, then batches of 16 contexts generated
//! token by token (which concepts are on, how each neuron responds) and written as shards, then
//! the truth (`__unravel__/truth/neurons.json`) and the concepts as planted directions for `verify --sae`.
//!
//! Every draw comes from one seeded generator in a fixed order (the neurons, then per token its
//! concepts and then each neuron's response), so a spec and seed give the same bytes every time.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, StandardNormal};

use super::{
    draw_neurons, NeuronSpec, NeuronTruth, PlantedNeuron, DISTRACTOR_RATE, DISTRACTOR_SCALE,
    NEURON_HOOK, NEURON_TRUTH_FILE,
};
use crate::store::{
    ContextBatch, DatasetWriter, HookInfo, Manifest, StorageDtype, StoreError, WriterOptions,
};
use crate::synth::error::SynthError;
use crate::synth::planted::{new_truth_dir, synthetic_manifest};

/// Writes the dataset into `dir` and the truth into `dir/__unravel__/truth/neurons.json`.
pub fn write_neurons(spec: &NeuronSpec, dir: &Path) -> crate::store::Result<NeuronTruth> {
    write_neurons_with_progress(spec, dir, &mut |_| {})
}

/// [`write_neurons`], calling `progress(rows written)` after every batch of contexts.
pub fn write_neurons_with_progress(
    spec: &NeuronSpec,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> crate::store::Result<NeuronTruth> {
    let bad = |message: String| StoreError::Batch {
        path: dir.to_path_buf(),
        message,
    };
    spec.check().map_err(|e| bad(e.to_string()))?;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let neurons = draw_neurons(spec, &mut rng);
    let wiring = Wiring::new(&neurons);
    let nc = spec.concepts;
    let options = WriterOptions {
        shard_rows: spec.shard_tokens,
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::create(dir, neurons_manifest(spec), options)?;
    let contexts = spec.tokens.div_ceil(spec.ctx as u64);
    let mut tokens = TokenDraw::new(nc);
    let mut c = 0u64;
    while c < contexts {
        let batch = 16u64.min(contexts - c);
        let rows = batch as usize * spec.ctx;
        let mut acts = vec![0f32; rows * spec.neurons];
        let mut labels: Vec<Vec<Option<String>>> = vec![vec![None; rows]; nc];
        let mut texts = Vec::with_capacity(rows);
        for (r, out) in acts.chunks_mut(spec.neurons).enumerate() {
            texts.push(tokens.concepts(spec, &mut rng, &mut labels, r));
            wiring.respond(spec, &tokens.on, &mut rng, out);
        }
        let ids: Vec<u64> = (c..c + batch)
            .flat_map(|k| std::iter::repeat_n(k, spec.ctx))
            .collect();
        let positions: Vec<u32> = (0..rows).map(|r| (r % spec.ctx) as u32).collect();
        writer.write_batch(&ContextBatch {
            context_ids: &ids,
            positions: &positions,
            token_ids: &vec![0u32; rows],
            tokens: &texts,
            special: &vec![false; rows],
            labels: &labels,
            hooks: &[&acts],
        })?;
        c += batch;
        progress(c * spec.ctx as u64);
    }
    writer.finish()?;
    let truth = NeuronTruth {
        spec: spec.clone(),
        concepts: (0..nc).map(NeuronSpec::concept_name).collect(),
        neurons,
    };
    let path = new_truth_dir(dir).join(NEURON_TRUTH_FILE);
    let json = serde_json::to_string_pretty(&truth).map_err(|e| bad(e.to_string()))?;
    crate::io::write_atomic(&path, json.as_bytes()).map_err(|e| StoreError::io(&path, e))?;
    let frequencies: Vec<f32> = tokens
        .concept_rows
        .iter()
        .map(|&k| (k as f64 / (contexts * spec.ctx as u64) as f64) as f32)
        .collect();
    write_concept_directions(spec, &wiring.members, &frequencies, dir)
        .map_err(|e| bad(e.to_string()))?;
    Ok(truth)
}

/// The manifest of a planted-neuron dataset: hook `neurons` (f32, one dim per neuron) and one
/// label column per concept.
fn neurons_manifest(spec: &NeuronSpec) -> Manifest {
    let (n, nc) = (spec.neurons, spec.concepts);
    let mut manifest = synthetic_manifest(
        format!(
            "synthetic:neurons(n={n},concepts={nc},p={},seed={})",
            spec.concept_density, spec.seed
        ),
        spec.seed,
        HookInfo {
            name: NEURON_HOOK.into(),
            d: n,
            dtype: StorageDtype::F32,
        },
        spec.ctx,
    );
    manifest.label_columns = (0..nc)
        .map(|c| format!("label.{}", NeuronSpec::concept_name(c)))
        .collect();
    manifest
}

/// The planted neurons as lookups for the per-token loop.
struct Wiring {
    /// Per neuron: (concept index, weight) of the concepts it responds to.
    members: Vec<Vec<(usize, f32)>>,
    /// Per neuron: the concept indices of a distractor's outlier concepts.
    outliers: Vec<Vec<usize>>,
    /// Per neuron: (dead, fires at random, distractor), looked up once instead of per token.
    kinds: Vec<(bool, bool, bool)>,
}

impl Wiring {
    fn new(neurons: &[PlantedNeuron]) -> Wiring {
        let index = |c: &String| c[1..].parse::<usize>().unwrap_or(0);
        Wiring {
            members: neurons
                .iter()
                .map(|p| {
                    p.concepts
                        .iter()
                        .zip(&p.weights)
                        .map(|(c, &w)| (index(c), w))
                        .collect()
                })
                .collect(),
            outliers: neurons
                .iter()
                .map(|p| p.outlier_concepts.iter().map(index).collect())
                .collect(),
            kinds: neurons
                .iter()
                .map(|p| {
                    let c = p.class.as_str();
                    (
                        c == "dead",
                        c == "unexplained" || c == "distractor",
                        c == "distractor",
                    )
                })
                .collect(),
        }
    }

    /// Every neuron's activation on one token whose concepts are `on`, into `out`.
    fn respond(&self, spec: &NeuronSpec, on: &[bool], rng: &mut StdRng, out: &mut [f32]) {
        for (u, (o, &(dead, random, distractor))) in out.iter_mut().zip(&self.kinds).enumerate() {
            if dead {
                continue;
            }
            if distractor && self.outliers[u].iter().any(|&k| on[k]) {
                // Rare and huge, else silent half the time, else its baseline (below).
                if rng.random_bool(DISTRACTOR_RATE) {
                    let jitter = 1.0 + 0.2 * rng.sample::<f32, _>(StandardNormal);
                    *o = (DISTRACTOR_SCALE * jitter).max(0.0);
                    continue;
                }
                if rng.random_bool(0.5) {
                    continue;
                }
            }
            let mut pre = 0f32;
            for &(k, w) in &self.members[u] {
                if on[k] && !rng.random_bool(spec.miss) {
                    pre += w * (1.0 + 0.2 * rng.sample::<f32, _>(StandardNormal));
                }
            }
            if random && rng.random_bool(spec.concept_density) {
                pre += rng.sample::<f32, _>(Exp1);
            }
            if spec.spurious > 0.0 && rng.random_bool(spec.spurious) {
                pre += rng.sample::<f32, _>(Exp1);
            }
            if spec.noise > 0.0 {
                pre += spec.noise * rng.sample::<f32, _>(StandardNormal);
            }
            *o = pre.max(0.0);
        }
    }
}

/// The concepts of the token being drawn, and how many tokens carried each so far.
struct TokenDraw {
    on: Vec<bool>,
    concept_rows: Vec<u64>,
}

impl TokenDraw {
    fn new(concepts: usize) -> TokenDraw {
        TokenDraw {
            on: vec![false; concepts],
            concept_rows: vec![0; concepts],
        }
    }

    /// Draws which concepts row `r` carries (concept 2i+1 joins 2i with probability `overlap`),
    /// marks them in `labels` and returns the token's text: its concepts joined by `+`, or `·`.
    fn concepts(
        &mut self,
        spec: &NeuronSpec,
        rng: &mut StdRng,
        labels: &mut [Vec<Option<String>>],
        r: usize,
    ) -> String {
        let on = &mut self.on;
        let nc = on.len();
        for v in on.iter_mut() {
            *v = rng.random_bool(spec.concept_density);
        }
        for p in (0..nc / 2).map(|i| 2 * i) {
            if on[p] && !on[p + 1] && spec.overlap > 0.0 && rng.random_bool(spec.overlap) {
                on[p + 1] = true;
            }
        }
        let names: Vec<String> = (0..nc)
            .filter(|&k| on[k])
            .map(NeuronSpec::concept_name)
            .collect();
        for (k, col) in labels.iter_mut().enumerate() {
            if on[k] {
                col[r] = Some("1".into());
                self.concept_rows[k] += 1;
            }
        }
        if names.is_empty() {
            "·".to_string()
        } else {
            names.join("+")
        }
    }
}

/// The concepts as planted features, for `verify --sae`: concept c adds the direction
/// (w_{j,c} over its neurons j), normalised, to the neurons whenever it is on. Concepts no neuron
/// responds to have no direction and are left out.
fn write_concept_directions(
    spec: &NeuronSpec,
    members: &[Vec<(usize, f32)>],
    frequencies: &[f32],
    dir: &Path,
) -> Result<(), SynthError> {
    use candle_core::{Device, Tensor};
    let n = spec.neurons;
    let mut directions = Vec::new();
    let mut kept_freqs = Vec::new();
    for (c, &freq) in frequencies.iter().enumerate() {
        let mut v = vec![0f32; n];
        for (j, m) in members.iter().enumerate() {
            for &(k, w) in m {
                if k == c {
                    v[j] = w;
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            directions.extend(v.iter().map(|x| x / norm));
            kept_freqs.push(freq);
        }
    }
    let k = kept_freqs.len();
    let tensors = [
        (
            "directions",
            Tensor::from_slice(&directions, (k, n), &Device::Cpu)?,
        ),
        (
            "frequencies",
            Tensor::from_slice(&kept_freqs, k, &Device::Cpu)?,
        ),
    ];
    let path = new_truth_dir(dir).join(crate::synth::planted::TRUTH_FILE);
    crate::io::write_safetensors(&path, &tensors).map_err(|e| SynthError::file(&path, e))
}
