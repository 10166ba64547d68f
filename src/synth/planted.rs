//! Planted features: `n_features` unit directions in `d` dims (superposition when n_features > d);
//! each token's activation is the sum of its active features' directions times their magnitudes,
//! plus optional Gaussian noise. Written in the same shard format as `unravel extract` (hook
//! `synthetic`, no special rows) with the ground truth in `__unravel__/truth/ground_truth.safetensors`.
//!
//! The generative model, every part chosen in [`PlantedSpec`]:
//! - directions: independent Gaussian (`Random`), pushed apart until no pair has
//!   |cos| > target (`MaxCosine`), or near-parallel clusters around random centres (`Clusters`);
//! - frequencies: feature i is active with probability `density` (uniform) or
//!   `density · decay^i` (power law);
//! - magnitudes: Exponential(1), Uniform(0, 2) or |Normal(0, 1)|·√(π/2) (all mean 1), times the
//!   feature's importance `importance_decay^i`;
//! - structure: consecutive features in co-firing groups of `group_size` (a group fires with its
//!   first member's probability and then all members fire), or in mutually exclusive sets of
//!   `exclusive_size` (the set fires with its first member's probability; one member, uniformly);
//! - noise: N(0, noise²) per dimension.
//!
//! Truth tensors: `directions [n, d]`, `frequencies [n]` (measured), `probabilities [n]`
//! (specified), `importance [n]`, and with `save_activations` the non-zero per-token activations as
//! `act_token [nnz]` (i64), `act_feature [nnz]` (i64), `act_value [nnz]` (f32).

use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Exp1, StandardNormal};

use super::error::{spec, SynthError};
use crate::store::{Bos, CorpusInfo, HookInfo, Manifest, ModelInfo, StorageDtype};

mod write;

pub use write::{write_planted, write_planted_with_progress};

/// The hook (column) name of planted datasets.
pub const SYNTH_HOOK: &str = "synthetic";
pub use super::truth::{new_truth_dir, truth_dir, TRUTH_DIR, TRUTH_FILE};

/// How the planted directions are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Directions {
    Random,
    /// Push pairs apart until every |cos| ≤ the target (or iterations run out; the achieved
    /// maximum is reported).
    MaxCosine(f32),
    /// `clusters` random centres; each feature is its centre plus `spread` × a random direction.
    Clusters {
        clusters: usize,
        spread: f32,
    },
}

/// Distribution of a feature's magnitude when active (all with mean 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magnitude {
    Exponential,
    Uniform,
    HalfNormal,
}

impl std::str::FromStr for Magnitude {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, SynthError> {
        match s {
            "exponential" => Ok(Magnitude::Exponential),
            "uniform" => Ok(Magnitude::Uniform),
            "half-normal" | "abs-normal" => Ok(Magnitude::HalfNormal),
            o => spec(format!(
                "`{o}`: expected exponential, uniform or half-normal"
            )),
        }
    }
}

/// What to plant.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantedSpec {
    pub n_features: usize,
    pub d: usize,
    /// Probability that feature 0 (every feature, without a power law) is active on a token.
    pub density: f64,
    /// Power-law frequencies: p_i = density · decay^i (None: all equal).
    pub frequency_decay: Option<f64>,
    pub directions: Directions,
    pub magnitude: Magnitude,
    /// Importance of feature i = importance_decay^i (scales its magnitude); 1 = all equal.
    pub importance_decay: f32,
    /// Co-firing groups of this many consecutive features (1 = independent).
    pub group_size: usize,
    /// Mutually exclusive sets of this many consecutive features (1 = none).
    pub exclusive_size: usize,
    pub tokens: u64,
    pub seed: u64,
    /// Standard deviation of additive Gaussian noise per dimension.
    pub noise: f32,
    /// Store every token's non-zero feature activations in the truth file.
    pub save_activations: bool,
    /// Rows per context (grouping only: contexts have no meaning here).
    pub ctx: usize,
    pub shard_tokens: usize,
    pub dtype: StorageDtype,
}

impl PlantedSpec {
    /// Independent features, random directions, Exponential(1) magnitudes, ctx 64, shards of
    /// 16384 rows, f32, no noise.
    pub fn new(n_features: usize, d: usize, density: f64, tokens: u64, seed: u64) -> PlantedSpec {
        PlantedSpec {
            n_features,
            d,
            density,
            frequency_decay: None,
            directions: Directions::Random,
            magnitude: Magnitude::Exponential,
            importance_decay: 1.0,
            group_size: 1,
            exclusive_size: 1,
            tokens,
            seed,
            noise: 0.0,
            save_activations: false,
            ctx: 64,
            shard_tokens: 16_384,
            dtype: StorageDtype::F32,
        }
    }

    /// Activation probability of feature i.
    pub fn probability(&self, i: usize) -> f64 {
        match self.frequency_decay {
            Some(decay) => self.density * decay.powi(i as i32),
            None => self.density,
        }
    }

    /// Checks the spec; the message names the `unravel synth` flag at fault.
    pub fn check(&self) -> Result<(), SynthError> {
        if self.n_features == 0 || self.d == 0 || self.tokens == 0 {
            return spec("--features, --dims and --tokens must be at least 1");
        }
        if !(self.density > 0.0 && self.density <= 1.0) {
            return spec(format!("--density {}: must be in (0, 1]", self.density));
        }
        if let Some(decay) = self.frequency_decay {
            if !(decay > 0.0 && decay <= 1.0) {
                return spec(format!("--power-law {decay}: must be in (0, 1]"));
            }
        }
        if let Directions::MaxCosine(c) = self.directions {
            if !(c > 0.0 && c <= 1.0) {
                return spec(format!("--max-cosine {c}: must be in (0, 1]"));
            }
        }
        if !(self.importance_decay > 0.0 && self.noise >= 0.0) {
            return spec("--importance-decay must be positive and --noise non-negative");
        }
        if self.group_size == 0 || self.exclusive_size == 0 {
            return spec("--group-size and --exclusive-size must be at least 1");
        }
        if self.group_size > 1 && self.exclusive_size > 1 {
            return spec("choose --group-size or --exclusive-size, not both");
        }
        Ok(())
    }
}

/// The ground truth of a planted dataset.
#[derive(Debug, Clone)]
pub struct PlantedTruth {
    /// `[n_features, d]`, unit rows.
    pub directions: Vec<f32>,
    /// Measured activation frequencies.
    pub frequencies: Vec<f32>,
    pub n_features: usize,
    pub d: usize,
    /// Largest |cos| between two planted directions.
    pub max_cosine: f32,
}

fn normalize_rows(m: &mut [f32], d: usize) {
    for row in m.chunks_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
}

fn gaussian(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// Largest |cos| over pairs of unit rows.
pub fn max_pairwise_cosine(m: &[f32], d: usize) -> f32 {
    use rayon::prelude::*;
    let n = m.len() / d;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let a = &m[i * d..(i + 1) * d];
            (i + 1..n)
                .map(|j| crate::kernels::dot(a, &m[j * d..(j + 1) * d]).abs())
                .fold(0f32, f32::max)
        })
        .reduce(|| 0f32, f32::max)
}

/// Draws the directions.
pub fn draw_directions(kind: Directions, n: usize, d: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut w = gaussian(rng, n * d);
    match kind {
        Directions::Random => normalize_rows(&mut w, d),
        Directions::Clusters { clusters, spread } => {
            let k = clusters.max(1);
            let mut centres = gaussian(rng, k * d);
            normalize_rows(&mut centres, d);
            normalize_rows(&mut w, d);
            for (i, row) in w.chunks_mut(d).enumerate() {
                let c = &centres[(i % k) * d..(i % k + 1) * d];
                row.iter_mut()
                    .zip(c)
                    .for_each(|(v, &c)| *v = c + spread * *v);
            }
            normalize_rows(&mut w, d);
        }
        Directions::MaxCosine(target) => {
            normalize_rows(&mut w, d);
            // Repulsion: move each row away from rows it is too close to, renormalise, repeat.
            for _ in 0..2000 {
                if max_pairwise_cosine(&w, d) <= target {
                    break;
                }
                let snapshot = w.clone();
                {
                    use rayon::prelude::*;
                    w.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
                        let a = &snapshot[i * d..(i + 1) * d];
                        for (j, b) in snapshot.chunks(d).enumerate() {
                            if i == j {
                                continue;
                            }
                            let c = crate::kernels::dot(a, b);
                            if c.abs() > target {
                                // Push by the excess only, so crowded rows are not thrown around.
                                let excess = c - target.copysign(c);
                                row.iter_mut()
                                    .zip(b)
                                    .for_each(|(v, &bv)| *v -= 0.5 * excess * bv);
                            }
                        }
                    });
                }
                normalize_rows(&mut w, d);
            }
        }
    }
    w
}

fn magnitude(kind: Magnitude, rng: &mut StdRng) -> f32 {
    match kind {
        Magnitude::Exponential => rng.sample(Exp1),
        Magnitude::Uniform => 2.0 * rng.random::<f32>(),
        Magnitude::HalfNormal => {
            rng.sample::<f32, _>(StandardNormal).abs() * (std::f32::consts::PI / 2.0).sqrt()
        }
    }
}

/// The active (feature, magnitude) pairs of one token.
fn draw_token(
    spec: &PlantedSpec,
    probs: &[f64],
    importance: &[f32],
    rng: &mut StdRng,
    out: &mut Vec<(usize, f32)>,
) {
    out.clear();
    let n = spec.n_features;
    let (g, x) = (spec.group_size, spec.exclusive_size);
    let mut i = 0;
    while i < n {
        if g > 1 {
            let end = (i + g).min(n);
            if rng.random::<f64>() < probs[i] {
                for (f, &imp) in importance.iter().enumerate().take(end).skip(i) {
                    out.push((f, imp * magnitude(spec.magnitude, rng)));
                }
            }
            i = end;
        } else if x > 1 {
            let end = (i + x).min(n);
            if rng.random::<f64>() < probs[i] {
                let f = i + rng.random_range(0..end - i);
                out.push((f, importance[f] * magnitude(spec.magnitude, rng)));
            }
            i = end;
        } else {
            if rng.random::<f64>() < probs[i] {
                out.push((i, importance[i] * magnitude(spec.magnitude, rng)));
            }
            i += 1;
        }
    }
}

/// The manifest of a synthetic dataset: no model, no corpus, one hook, no BOS.
pub(crate) fn synthetic_manifest(id: String, seed: u64, hook: HookInfo, ctx: usize) -> Manifest {
    Manifest::new(
        ModelInfo {
            id,
            revision: None,
            arch: "synthetic".into(),
            config_sha256: String::new(),
            weights_sha256: None,
            random_weights: true,
            seed: Some(seed),
        },
        String::new(),
        vec![hook],
        ctx,
        Bos::None,
        CorpusInfo {
            sources: vec![],
            sha256: String::new(),
            format: "synthetic".into(),
            text_field: None,
            documents: 0,
            empty_documents: 0,
        },
    )
}

/// Mean over ground-truth directions of the best cosine with any of the SAE's decoder rows
/// (`[d_sae, d]`), and the fraction with best cosine ≥ `threshold` (see `verify` for the full
/// report).
pub fn mmcs(truth: &[f32], decoder: &[f32], d: usize, threshold: f32) -> (f64, f64) {
    let r = super::verify::recovery(truth, &[], decoder, &[], d, threshold);
    (r.mmcs, r.recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(3)
    }

    #[test]
    fn direction_models() {
        let (n, d) = (64, 16);
        let random = draw_directions(Directions::Random, n, d, &mut rng());
        let spread = draw_directions(Directions::MaxCosine(0.5), n, d, &mut rng());
        assert!(max_pairwise_cosine(&random, d) > 0.6);
        assert!(
            max_pairwise_cosine(&spread, d) <= 0.5 + 1e-3,
            "{}",
            max_pairwise_cosine(&spread, d)
        );
        let clustered = draw_directions(
            Directions::Clusters {
                clusters: 4,
                spread: 0.2,
            },
            n,
            d,
            &mut rng(),
        );
        // Members of one cluster are near-parallel: features 0 and 4 share centre 0.
        let c = crate::kernels::dot(&clustered[0..d], &clustered[4 * d..5 * d]);
        assert!(c > 0.9, "{c}");
    }

    #[test]
    fn frequencies_groups_and_exclusive_sets() {
        let mut spec = PlantedSpec::new(8, 4, 0.5, 1, 0);
        spec.frequency_decay = Some(0.5);
        assert!((spec.probability(3) - 0.0625).abs() < 1e-12);
        let probs: Vec<f64> = vec![0.3; 8];
        let imp = vec![1.0f32; 8];
        let mut r = rng();
        let mut out = vec![];
        spec.group_size = 4;
        let (mut together, mut fired) = (0, 0);
        for _ in 0..2000 {
            draw_token(&spec, &probs, &imp, &mut r, &mut out);
            let g0 = out.iter().filter(|(f, _)| *f < 4).count();
            assert!(g0 == 0 || g0 == 4, "a co-firing group fired partly");
            together += (g0 == 4) as usize;
            fired += out.len();
        }
        assert!((together as f64 / 2000.0 - 0.3).abs() < 0.04, "{together}");
        assert!(fired > 0);
        spec.group_size = 1;
        spec.exclusive_size = 4;
        for _ in 0..2000 {
            draw_token(&spec, &probs, &imp, &mut r, &mut out);
            assert!(
                out.iter().filter(|(f, _)| *f < 4).count() <= 1,
                "an exclusive set fired twice"
            );
        }
        // Magnitudes all have mean 1.
        for kind in [
            Magnitude::Exponential,
            Magnitude::Uniform,
            Magnitude::HalfNormal,
        ] {
            let mean: f32 = (0..20000).map(|_| magnitude(kind, &mut r)).sum::<f32>() / 20000.0;
            assert!((mean - 1.0).abs() < 0.03, "{kind:?}: {mean}");
        }
    }
}
