//! Planted polysemantic neurons: the ground truth of the polysemanticity audit.
//!
//! Each token carries each of `concepts` concepts independently with probability
//! `concept_density` (concept 2i+1 also joins concept 2i's tokens with probability `overlap`).
//! Neurons are of five kinds, in these proportions: polysemantic (respond to 2..=`k_max`
//! concepts, never two of one overlapping pair), monosemantic (one concept), distractors (below),
//! unexplained (fire at random, with probability `concept_density`) and dead (always 0). A
//! neuron's activation is
//!
//!   a = max(0, Σ_{c ∈ S, c on the token, not missed} w_c·(1 + 0.2·ε) + spurious + noise·ε')
//!
//! with w_c ~ U(0.5, 1.5), a miss with probability `miss`, a spurious Exp(1) firing with
//! probability `spurious`, and ε, ε' standard normal. Dead neurons get no noise.
//!
//! A distractor is an unexplained neuron whose mean — not its ranks — moves with 2..=`k_max`
//! concepts (its `outlier_concepts`): on a token carrying one of them it fires
//! `DISTRACTOR_SCALE`·(1 + 0.2·ε) with probability `DISTRACTOR_RATE`, else is silent (0) half
//! the time and at its baseline otherwise. The rare huge firings lift the concept's mean far above
//! the rest (selectivity ≈ 0.7) while a random concept token is usually out-activated by a
//! random other token (AUROC ≈ 0.4): a sound audit must not call it polysemantic.
//!
//! Written as a dataset (hook `neurons`, one label column `label.cNN` per concept, value `1` on
//! the tokens that carry it; each token's text lists its concepts so report cards read well) with
//! the truth in `__unravel__/truth/neurons.json`.

use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::error::{spec, SynthError};

mod write;

pub use write::{write_neurons, write_neurons_with_progress};

/// The hook (column) name of planted-neuron datasets.
pub const NEURON_HOOK: &str = "neurons";
pub const NEURON_TRUTH_FILE: &str = "neurons.json";
/// Default fraction of distractor neurons (`synth --distractor`).
pub const DEFAULT_DISTRACTOR: f64 = 0.1;
/// Probability that a distractor fires huge on a token carrying one of its outlier concepts.
pub const DISTRACTOR_RATE: f64 = 0.03;
/// A distractor's huge firing, in units of a planted response (w ≈ 1).
pub const DISTRACTOR_SCALE: f32 = 20.0;

/// What to plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronSpec {
    pub neurons: usize,
    pub concepts: usize,
    pub concept_density: f64,
    pub polysemantic: f64,
    pub monosemantic: f64,
    pub dead: f64,
    /// Fraction of distractor neurons (absent in truths written before they existed: 0).
    #[serde(default)]
    pub distractor: f64,
    pub k_max: usize,
    pub miss: f64,
    pub spurious: f64,
    pub overlap: f64,
    pub noise: f32,
    pub tokens: u64,
    pub seed: u64,
    pub ctx: usize,
    pub shard_tokens: usize,
}

impl NeuronSpec {
    /// 30% polysemantic (2–3 concepts), 30% monosemantic, 10% distractors, 5% dead, the rest
    /// unexplained; 16 concepts at density 0.05; 10% misses, 1% spurious firings, noise 0.05.
    pub fn new(neurons: usize, tokens: u64, seed: u64) -> NeuronSpec {
        NeuronSpec {
            neurons,
            concepts: 16,
            concept_density: 0.05,
            polysemantic: 0.3,
            monosemantic: 0.3,
            dead: 0.05,
            distractor: DEFAULT_DISTRACTOR,
            k_max: 3,
            miss: 0.1,
            spurious: 0.01,
            overlap: 0.0,
            noise: 0.05,
            tokens,
            seed,
            ctx: 64,
            shard_tokens: 65_536,
        }
    }

    /// Checks the spec; the message names the `unravel synth` flag at fault.
    pub fn check(&self) -> Result<(), SynthError> {
        if self.neurons == 0 || self.tokens == 0 {
            return spec("--neurons and --tokens must be at least 1");
        }
        if self.concepts < 2 || self.concepts > 100 {
            return spec(format!("--concepts {}: must be 2 to 100", self.concepts));
        }
        let p = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                spec(format!("--{name} {v}: must be in [0, 1]"))
            }
        };
        p("concept-density", self.concept_density)?;
        p("polysemantic", self.polysemantic)?;
        p("monosemantic", self.monosemantic)?;
        p("dead", self.dead)?;
        p("distractor", self.distractor)?;
        p("miss", self.miss)?;
        p("spurious", self.spurious)?;
        p("overlap", self.overlap)?;
        if self.polysemantic + self.monosemantic + self.dead + self.distractor > 1.0 + 1e-9 {
            return spec(
                "--polysemantic + --monosemantic + --dead + --distractor must be at most 1",
            );
        }
        if self.k_max < 2 || self.k_max > self.concepts / 2 {
            return spec(format!(
                "--k-max {}: must be at least 2 and at most half of --concepts",
                self.k_max
            ));
        }
        if self.noise < 0.0 {
            return spec("--noise must be non-negative");
        }
        Ok(())
    }

    pub fn concept_name(c: usize) -> String {
        format!("c{c:02}")
    }
}

/// One planted neuron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantedNeuron {
    pub unit: usize,
    /// `polysemantic`, `monosemantic`, `distractor`, `unexplained` or `dead`.
    pub class: String,
    /// Concept names it responds to (none for a distractor).
    pub concepts: Vec<String>,
    pub weights: Vec<f32>,
    /// A distractor's concepts: those on whose tokens it fires rarely but huge (it does not
    /// respond to them: an audit should pass none of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlier_concepts: Vec<String>,
}

/// `__unravel__/truth/neurons.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeuronTruth {
    pub spec: NeuronSpec,
    pub concepts: Vec<String>,
    pub neurons: Vec<PlantedNeuron>,
}

impl NeuronTruth {
    /// Reads `DIR/__unravel__/truth/neurons.json` (legacy: `DIR/truth/`; DIR may be the truth
    /// folder itself).
    pub fn load(dir: &Path) -> Result<NeuronTruth, SynthError> {
        let mut path = super::truth::truth_dir(dir).join(NEURON_TRUTH_FILE);
        if !path.exists() {
            path = dir.join(NEURON_TRUTH_FILE);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SynthError::file(&path, e))?;
        serde_json::from_str(&text).map_err(|e| SynthError::file(&path, e))
    }
}

/// Chooses each neuron's class and concepts.
fn draw_neurons(spec: &NeuronSpec, rng: &mut StdRng) -> Vec<PlantedNeuron> {
    let n = spec.neurons;
    let count = |f: f64| (f * n as f64).round() as usize;
    let (np, nm, nd, nx) = (
        count(spec.polysemantic),
        count(spec.monosemantic),
        count(spec.dead),
        count(spec.distractor),
    );
    let mut classes: Vec<&str> = std::iter::repeat_n("polysemantic", np)
        .chain(std::iter::repeat_n("monosemantic", nm))
        .chain(std::iter::repeat_n("dead", nd))
        .chain(std::iter::repeat_n("distractor", nx))
        .take(n)
        .collect();
    classes.resize(n, "unexplained");
    classes.shuffle(rng);
    let pairs = spec.concepts.div_ceil(2);
    classes
        .into_iter()
        .enumerate()
        .map(|(unit, class)| {
            let k = match class {
                "polysemantic" | "distractor" => rng.random_range(2..=spec.k_max),
                "monosemantic" => 1,
                _ => 0,
            };
            // At most one concept of each overlapping pair (2i, 2i+1).
            let mut pair_ids: Vec<usize> = (0..pairs).collect();
            pair_ids.shuffle(rng);
            let mut ids: Vec<usize> = pair_ids[..k]
                .iter()
                .map(|&p| (2 * p + rng.random_range(0..2usize)).min(spec.concepts - 1))
                .collect();
            ids.sort();
            let names: Vec<String> = ids.iter().map(|&c| NeuronSpec::concept_name(c)).collect();
            if class == "distractor" {
                return PlantedNeuron {
                    unit,
                    class: class.into(),
                    concepts: vec![],
                    weights: vec![],
                    outlier_concepts: names,
                };
            }
            PlantedNeuron {
                unit,
                class: class.into(),
                concepts: names,
                weights: ids.iter().map(|_| rng.random_range(0.5..1.5)).collect(),
                outlier_concepts: vec![],
            }
        })
        .collect()
}

/// Precision, recall and F1 of an audit against planted neurons.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub true_positives: usize,
    pub predicted: usize,
    pub actual: usize,
}

impl Prf {
    fn new(tp: usize, predicted: usize, actual: usize) -> Prf {
        let precision = if predicted > 0 {
            tp as f64 / predicted as f64
        } else {
            1.0
        };
        let recall = if actual > 0 {
            tp as f64 / actual as f64
        } else {
            1.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            precision,
            recall,
            f1,
            true_positives: tp,
            predicted,
            actual,
        }
    }
}

/// The audit scored against the truth: which neurons are polysemantic, and which
/// (neuron, concept) pairs the neurons respond to. What `unravel verify --audit` writes to
/// [`VERIFY_FILE`](super::verify::VERIFY_FILE).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeuronScore {
    /// Distractors are negatives here: they are not polysemantic.
    pub polysemantic: Prf,
    /// A distractor responds to no concept: each concept passed on one is a false positive.
    pub concepts: Prf,
    /// Fraction of neurons whose class the audit got right (a distractor's right class is
    /// `unexplained`).
    pub class_accuracy: f64,
    /// Planted distractors, those the audit called polysemantic, and (distractor, outlier
    /// concept) pairs it passed.
    pub distractors: usize,
    pub distractors_flagged: usize,
    pub distractor_concepts_passed: usize,
    /// Every neuron whose class or passing concepts the audit got wrong, by unit id (what the
    /// run index lists, each linked to the neuron's dashboard in the audit report). Absent in
    /// files written before it existed.
    #[serde(default)]
    pub mistakes: Vec<NeuronMistake>,
}

/// One neuron the audit got wrong: its planted class and concepts against the audit's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronMistake {
    pub unit: usize,
    pub planted: String,
    pub audited: String,
    /// Planted concepts the audit did not pass, and concepts it passed that were not planted.
    pub missed: Vec<String>,
    pub extra: Vec<String>,
}

/// Compares classes and passing concepts: `found[u]` = (class, passing concept names) of neuron u.
pub fn score_neurons(
    truth: &NeuronTruth,
    found: &[(String, Vec<String>)],
) -> Result<NeuronScore, SynthError> {
    if found.len() != truth.neurons.len() {
        return Err(SynthError::UnitCount {
            units: found.len(),
            neurons: truth.neurons.len(),
            hook: NEURON_HOOK,
        });
    }
    let (mut tp, mut pred, mut act) = (0, 0, 0);
    let (mut ctp, mut cpred, mut cact) = (0, 0, 0);
    let mut right = 0;
    let (mut distractors, mut flagged, mut outliers_passed) = (0, 0, 0);
    let mut mistakes = vec![];
    for (unit, (t, (class, concepts))) in truth.neurons.iter().zip(found).enumerate() {
        let (is, said) = (t.class == "polysemantic", class == "polysemantic");
        tp += (is && said) as usize;
        pred += said as usize;
        act += is as usize;
        let expected = if t.class == "distractor" {
            distractors += 1;
            flagged += said as usize;
            outliers_passed += concepts
                .iter()
                .filter(|c| t.outlier_concepts.contains(c))
                .count();
            "unexplained"
        } else {
            t.class.as_str()
        };
        right += (expected == class) as usize;
        cact += t.concepts.len();
        cpred += concepts.len();
        ctp += concepts.iter().filter(|c| t.concepts.contains(c)).count();
        let missed: Vec<String> = (t.concepts.iter())
            .filter(|c| !concepts.contains(c))
            .cloned()
            .collect();
        let extra: Vec<String> = (concepts.iter())
            .filter(|c| !t.concepts.contains(c))
            .cloned()
            .collect();
        if expected != class || !missed.is_empty() || !extra.is_empty() {
            mistakes.push(NeuronMistake {
                unit,
                planted: t.class.clone(),
                audited: class.clone(),
                missed,
                extra,
            });
        }
    }
    Ok(NeuronScore {
        polysemantic: Prf::new(tp, pred, act),
        concepts: Prf::new(ctp, cpred, cact),
        class_accuracy: right as f64 / truth.neurons.len().max(1) as f64,
        distractors,
        distractors_flagged: flagged,
        distractor_concepts_passed: outliers_passed,
        mistakes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn neuron(unit: usize, class: &str, concepts: &[&str], outliers: &[&str]) -> PlantedNeuron {
        let names = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        PlantedNeuron {
            unit,
            class: class.into(),
            concepts: names(concepts),
            weights: vec![1.0; concepts.len()],
            outlier_concepts: names(outliers),
        }
    }

    /// A distractor is a negative: flagging it costs precision, its outlier concepts count as
    /// false concept passes, and its right class is `unexplained`.
    #[test]
    fn distractors_score_as_negatives() {
        let truth = NeuronTruth {
            spec: NeuronSpec::new(3, 100, 0),
            concepts: vec!["c00".into(), "c02".into(), "c04".into()],
            neurons: vec![
                neuron(0, "polysemantic", &["c00", "c02"], &[]),
                neuron(1, "distractor", &[], &["c02", "c04"]),
                neuron(2, "distractor", &[], &["c00", "c04"]),
            ],
        };
        let found = |class: &str, c: &[&str]| {
            (
                class.to_string(),
                c.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            )
        };
        let s = score_neurons(
            &truth,
            &[
                found("polysemantic", &["c00", "c02"]),
                found("polysemantic", &["c02", "c04"]),
                found("unexplained", &[]),
            ],
        )
        .unwrap();
        assert_eq!(
            (s.polysemantic.true_positives, s.polysemantic.predicted),
            (1, 2)
        );
        assert_eq!(s.polysemantic.precision, 0.5);
        assert_eq!(s.polysemantic.recall, 1.0);
        assert_eq!((s.concepts.true_positives, s.concepts.predicted), (2, 4));
        assert_eq!(s.concepts.actual, 2);
        assert_eq!(
            (
                s.distractors,
                s.distractors_flagged,
                s.distractor_concepts_passed
            ),
            (2, 1, 2)
        );
        assert!((s.class_accuracy - 2.0 / 3.0).abs() < 1e-12);
        // Neuron 1 (a distractor called polysemantic) is the one mistake; neuron 2's right class
        // is unexplained.
        assert_eq!(
            s.mistakes,
            vec![NeuronMistake {
                unit: 1,
                planted: "distractor".into(),
                audited: "polysemantic".into(),
                missed: vec![],
                extra: vec!["c02".into(), "c04".into()],
            }]
        );
    }

    /// The planted classes in their proportions; a distractor's outlier concepts come from
    /// distinct pairs; `--distractor 0` draws exactly what the spec did before distractors.
    #[test]
    fn draw_counts_and_progress() {
        let mut spec = NeuronSpec::new(100, 200, 4);
        spec.distractor = 0.2;
        let neurons = draw_neurons(&spec, &mut StdRng::seed_from_u64(4));
        let count = |c: &str| neurons.iter().filter(|n| n.class == c).count();
        assert_eq!(
            [
                count("polysemantic"),
                count("monosemantic"),
                count("dead"),
                count("distractor"),
                count("unexplained")
            ],
            [30, 30, 5, 20, 15]
        );
        for n in neurons.iter().filter(|n| n.class == "distractor") {
            assert!(n.concepts.is_empty() && n.weights.is_empty());
            let pairs: Vec<usize> = n
                .outlier_concepts
                .iter()
                .map(|c| c[1..].parse::<usize>().unwrap() / 2)
                .collect();
            assert!((2..=3).contains(&pairs.len()));
            assert!(pairs.windows(2).all(|w| w[0] < w[1]), "{pairs:?}");
        }
        // Progress: rows written after every batch of 16 contexts, ending at every row.
        let dir = tempfile::tempdir().unwrap();
        let mut seen = vec![];
        spec.neurons = 8;
        spec.tokens = 2000;
        write_neurons_with_progress(&spec, dir.path(), &mut |r| seen.push(r)).unwrap();
        let rows = 2000u64.div_ceil(64) * 64;
        assert_eq!(seen, [1024, rows]);
    }
}
