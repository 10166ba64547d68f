//! What a toy run trains: the experiment, its sizes, densities and importances, and the optimiser
//! — defaults per experiment, overridden by a TOML file and then by flags, validated once.
//!
//! Each experiment expands into *configurations* (one hidden size, one density, one importance
//! vector); every configuration is trained `instances` times from different initialisations, all
//! instances in one batched run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ToyError;

/// The experiments of Elhage et al. 2022 that `unravel toy` reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Experiment {
    Pentagon,
    SparseVsDense,
    Importance,
    HiddenSizes,
    Wtw,
    Phase,
}

impl Experiment {
    pub const ALL: [Experiment; 6] = [
        Experiment::Pentagon,
        Experiment::SparseVsDense,
        Experiment::Importance,
        Experiment::HiddenSizes,
        Experiment::Wtw,
        Experiment::Phase,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Experiment::Pentagon => "pentagon",
            Experiment::SparseVsDense => "sparse-vs-dense",
            Experiment::Importance => "importance",
            Experiment::HiddenSizes => "hidden-sizes",
            Experiment::Wtw => "wtw",
            Experiment::Phase => "phase",
        }
    }
}

impl std::str::FromStr for Experiment {
    type Err = ToyError;
    fn from_str(s: &str) -> Result<Self, ToyError> {
        Experiment::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Experiment::ALL.iter().map(|e| e.name()).collect();
                ToyError::UnknownExperiment {
                    name: s.to_string(),
                    expected: names.join(", "),
                }
            })
    }
}

/// Everything one toy run needs (the device and output folder are the CLI's business).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToySettings {
    pub experiment: Experiment,
    /// n: input features.
    pub features: usize,
    /// d: hidden sizes (one per configuration group; several only for `hidden-sizes`).
    pub hidden: Vec<usize>,
    /// Probability that a feature is non-zero (the paper's 1 − S).
    pub densities: Vec<f64>,
    /// Importance of feature i = importance_decay^i (1 = all equal).
    pub importance_decay: f64,
    /// `phase` only: importance of feature 2 relative to feature 1.
    pub relative_importances: Vec<f64>,
    /// x̂ = Wᵀh + b without the ReLU.
    pub linear: bool,
    /// Instances (initialisations) per configuration; the lowest-loss one is reported.
    pub instances: usize,
    pub steps: usize,
    pub batch: usize,
    /// AdamW, as torch's defaults in the reference: lr 1e-3, betas 0.9/0.999, eps 1e-8, wd 0.01.
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub seed: u64,
    /// Final (and initial) loss per instance = mean over this many fresh batches.
    pub eval_batches: usize,
}

/// One trained configuration: hidden size, density (every feature) and importance vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToyConfig {
    pub label: String,
    pub hidden: usize,
    pub density: f64,
    pub importance: Vec<f64>,
}

impl ToySettings {
    /// The paper's setting of each experiment (see README "Toy models" for the choices).
    pub fn defaults(experiment: Experiment) -> ToySettings {
        let base = ToySettings {
            experiment,
            features: 5,
            hidden: vec![2],
            densities: vec![0.05],
            importance_decay: 1.0,
            relative_importances: Vec::new(),
            linear: false,
            instances: 8,
            steps: 6000,
            batch: 1024,
            lr: 1e-3,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            seed: 0,
            eval_batches: 16,
        };
        match experiment {
            Experiment::Pentagon => base,
            Experiment::SparseVsDense => ToySettings {
                densities: vec![0.05, 0.99],
                importance_decay: 0.9,
                ..base
            },
            Experiment::Importance => ToySettings {
                importance_decay: 0.7,
                ..base
            },
            Experiment::HiddenSizes => ToySettings {
                features: 8,
                hidden: (1..=8).collect(),
                densities: vec![0.1],
                ..base
            },
            Experiment::Wtw => ToySettings {
                features: 100,
                hidden: vec![40],
                densities: vec![1.0, 0.3, 0.1, 0.03, 0.01, 0.003],
                importance_decay: 0.9,
                instances: 1,
                ..base
            },
            Experiment::Phase => ToySettings {
                features: 2,
                hidden: vec![1],
                densities: log_spaced(1.0, 0.01, 10),
                relative_importances: log_spaced(0.1, 10.0, 11),
                instances: 2,
                ..base
            },
        }
    }

    /// Checks every value once; the error names the offending key.
    pub fn validate(&self) -> Result<(), ToyError> {
        let exp = self.experiment.name();
        if self.features == 0 {
            return Err(ToyError::setting("features", "must be at least 1"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(ToyError::setting(
                "hidden",
                "needs at least one size, each at least 1",
            ));
        }
        if self.densities.is_empty() {
            return Err(ToyError::setting("densities", "needs at least one value"));
        }
        if let Some(p) = self.densities.iter().find(|p| !(**p > 0.0 && **p <= 1.0)) {
            return Err(ToyError::setting(
                "densities",
                format!("{p} is not in (0, 1]"),
            ));
        }
        if !(self.importance_decay > 0.0 && self.importance_decay.is_finite()) {
            return Err(ToyError::setting("importance_decay", "must be positive"));
        }
        if let Some(r) = self
            .relative_importances
            .iter()
            .find(|r| !(**r > 0.0 && r.is_finite()))
        {
            return Err(ToyError::setting(
                "relative_importances",
                format!("{r} is not positive"),
            ));
        }
        if self.experiment == Experiment::Phase {
            if self.features != 2 {
                return Err(ToyError::setting(
                    "features",
                    format!("phase needs 2, got {}", self.features),
                ));
            }
            if self.relative_importances.is_empty() {
                return Err(ToyError::setting(
                    "relative_importances",
                    "phase needs at least one",
                ));
            }
        }
        if self.experiment != Experiment::HiddenSizes && self.hidden.len() != 1 {
            return Err(ToyError::setting(
                "hidden",
                format!("{exp} takes one size (a list is for hidden-sizes)"),
            ));
        }
        for (key, v) in [
            ("instances", self.instances),
            ("steps", self.steps),
            ("batch", self.batch),
            ("eval_batches", self.eval_batches),
        ] {
            if v == 0 {
                return Err(ToyError::setting(key, "must be at least 1"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ToyError::setting(
                "lr",
                format!("{} is not positive", self.lr),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(ToyError::setting(
                "weight_decay",
                format!("{} is negative", self.weight_decay),
            ));
        }
        for (key, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(ToyError::setting(key, format!("{v} is not in [0, 1)")));
            }
        }
        if self.eps.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(ToyError::setting(
                "eps",
                format!("{} is not positive", self.eps),
            ));
        }
        Ok(())
    }

    /// The configurations, in the order they appear in results and plots.
    pub fn configs(&self) -> Vec<ToyConfig> {
        let n = self.features;
        let decayed = |decay: f64| (0..n).map(|i| decay.powi(i as i32)).collect::<Vec<_>>();
        let mut out = Vec::new();
        for &d in &self.hidden {
            let dl = if self.hidden.len() > 1 {
                format!("d={d} ")
            } else {
                String::new()
            };
            for &p in &self.densities {
                match self.experiment {
                    Experiment::Phase => {
                        for &r in &self.relative_importances {
                            out.push(ToyConfig {
                                label: format!("{dl}density={p:.3} r={r:.3}"),
                                hidden: d,
                                density: p,
                                importance: vec![1.0, r],
                            });
                        }
                    }
                    _ => out.push(ToyConfig {
                        label: format!(
                            "{dl}density={p}{}",
                            importance_label(self.importance_decay)
                        ),
                        hidden: d,
                        density: p,
                        importance: decayed(self.importance_decay),
                    }),
                }
            }
        }
        // The dense equal-importance case, to compare with the two-orthogonal-features solution.
        if self.experiment == Experiment::SparseVsDense && self.importance_decay != 1.0 {
            let p = self.densities.iter().cloned().fold(0.0, f64::max);
            out.push(ToyConfig {
                label: format!("density={p} equal importance"),
                hidden: self.hidden[0],
                density: p,
                importance: vec![1.0; n],
            });
        }
        out
    }
}

fn importance_label(decay: f64) -> String {
    if decay == 1.0 {
        " equal importance".into()
    } else {
        format!(" importance={decay}^i")
    }
}

/// `count` values from `from` to `to`, evenly spaced in log scale (both ends included).
pub fn log_spaced(from: f64, to: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![from];
    }
    let (a, b) = (from.ln(), to.ln());
    (0..count)
        .map(|k| (a + (b - a) * k as f64 / (count - 1) as f64).exp())
        .collect()
}

/// A `configs/toy-*.toml` file: every key optional; flags override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyFile {
    pub experiment: Option<String>,
    pub device: Option<String>,
    pub out: Option<String>,
    pub features: Option<usize>,
    pub hidden: Option<Vec<usize>>,
    pub densities: Option<Vec<f64>>,
    pub importance_decay: Option<f64>,
    pub relative_importances: Option<Vec<f64>>,
    pub linear: Option<bool>,
    pub instances: Option<usize>,
    pub steps: Option<usize>,
    pub batch: Option<usize>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub beta1: Option<f64>,
    pub beta2: Option<f64>,
    pub eps: Option<f64>,
    pub seed: Option<u64>,
    pub eval_batches: Option<usize>,
}

impl ToyFile {
    pub fn load(path: &Path) -> Result<ToyFile, ToyError> {
        let text = std::fs::read_to_string(path).map_err(|source| ToyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ToyError::Parse {
            path: path.to_path_buf(),
            error,
        })
    }

    /// The file's experiment, if it names one.
    pub fn experiment(&self) -> Result<Option<Experiment>, ToyError> {
        self.experiment
            .as_deref()
            .map(|s| {
                s.parse()
                    .map_err(|e: ToyError| ToyError::setting("experiment", e.to_string()))
            })
            .transpose()
    }

    /// Overrides the keys the file sets.
    pub fn apply(&self, s: &mut ToySettings) {
        macro_rules! set {
            ($($k:ident),*) => {$( if let Some(v) = &self.$k { s.$k = v.clone(); } )*};
        }
        set!(
            features,
            hidden,
            densities,
            importance_decay,
            relative_importances,
            linear,
            instances,
            steps,
            batch,
            lr,
            weight_decay,
            beta1,
            beta2,
            eps,
            seed,
            eval_batches
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_validates_and_names_round_trip() {
        for e in Experiment::ALL {
            assert_eq!(e.name().parse::<Experiment>().unwrap(), e);
            let s = ToySettings::defaults(e);
            s.validate().unwrap();
            assert!(!s.configs().is_empty());
        }
        assert!("pentagons".parse::<Experiment>().is_err());
        let phase = ToySettings::defaults(Experiment::Phase);
        assert_eq!(phase.configs().len(), 110);
        assert!((phase.relative_importances[5] - 1.0).abs() < 1e-12);
        assert_eq!(
            ToySettings::defaults(Experiment::SparseVsDense)
                .configs()
                .len(),
            3
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut s = ToySettings::defaults(Experiment::Pentagon);
        s.densities = vec![1.5];
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("densities"));
        let mut s = ToySettings::defaults(Experiment::Pentagon);
        s.batch = 0;
        assert!(s.validate().unwrap_err().to_string().starts_with("batch"));
        let f: ToyFile = toml::from_str("steps = 10\nhidden = [3]").unwrap();
        let mut s = ToySettings::defaults(Experiment::Pentagon);
        f.apply(&mut s);
        assert_eq!((s.steps, s.hidden.clone()), (10, vec![3]));
        assert!(toml::from_str::<ToyFile>("stepz = 10").is_err());
    }
}
