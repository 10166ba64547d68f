//! The generator's specification: every knob (a flag of `unravel synth` and a key of a spec
//! TOML file, spelled the same), the presets, the checks, the fingerprint.
//!
//! A spec file holds any of these keys (kebab-case, as the flags); the rest keep the defaults
//! of [`BenchSpec::default`], or of the preset named by `preset = "..."`:
//!
//! ```toml
//! preset = "synth-sae-bench-16k"   # optional base
//! features = 16384
//! dims = 768
//! seed = 42
//! zipf-exponent = 0.5
//! p-max = 0.4
//! p-min = 5e-4
//! roots = 128                      # 0: no hierarchy
//! branching = 4
//! depth = 3
//! exclusive = 1.0                  # share of parents whose children exclude each other
//! compensate = true
//! scale-children = true
//! correlation-rank = 25            # 0: independent firing
//! correlation-scale = 0.1
//! ortho-steps = 100                # 0: random unit directions
//! ortho-lr = 3e-4
//! mean-start = 5.0
//! mean-end = 4.0
//! std-mean = 0.5
//! std-std = 0.5
//! bias-norm = 0.5
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::synth::error::{spec, SynthError};

/// SynthSAEBench-16k (Chanin & Garriga-Alonso 2026; SAELens `synth_sae_bench.md`).
pub const PRESET_16K: &str = "synth-sae-bench-16k";
/// The same structure at 1/16 the size (1024 features in 96 dims): examples and tests.
pub const PRESET_TINY: &str = "synth-sae-bench-tiny";
/// Every preset name.
pub const PRESETS: &[&str] = &[PRESET_16K, PRESET_TINY];

/// Everything that defines a generated model (SAELens's `SyntheticModelConfig` with the
/// configs it holds). Defaults: SynthSAEBench-16k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BenchSpec {
    /// Ground-truth features.
    pub features: usize,
    /// Dimensions of the activation space.
    pub dims: usize,
    pub seed: u64,
    /// Zipf exponent of the firing probabilities (feature i: 1/(i+1)^exponent, scaled to
    /// [p-min, p-max]).
    pub zipf_exponent: f64,
    pub p_max: f64,
    pub p_min: f64,
    /// Hierarchy trees (0: no hierarchy); their nodes are features 0, 1, ... breadth first.
    pub roots: usize,
    /// Children per parent.
    pub branching: usize,
    /// Levels below a root (1: roots with leaf children).
    pub depth: usize,
    /// Share of parents whose children are mutually exclusive (one, at random, survives).
    pub exclusive: f64,
    /// Raise children's probabilities to make up for their parents' gating and their siblings'
    /// exclusion (SAELens `compensate_probabilities`).
    pub compensate: bool,
    /// A child's activation is scaled by parent activation / parent mean magnitude.
    pub scale_children: bool,
    /// Rank of the Gaussian-copula correlation of firing (0: independent).
    pub correlation_rank: usize,
    /// Standard deviation of the low-rank factor's entries.
    pub correlation_scale: f64,
    /// Adam steps pushing the directions towards orthogonality (0: random unit directions).
    pub ortho_steps: usize,
    pub ortho_lr: f64,
    /// Mean magnitude of feature 0 (the most frequent) ...
    pub mean_start: f64,
    /// ... falling linearly to this for the last (rarest) feature.
    pub mean_end: f64,
    /// Each feature's magnitude std is drawn once from |N(std-mean, std-std²)|.
    pub std_mean: f64,
    pub std_std: f64,
    /// Norm of the bias added to every row (0: none).
    pub bias_norm: f64,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            features: 16_384,
            dims: 768,
            seed: 42,
            zipf_exponent: 0.5,
            p_max: 0.4,
            p_min: 5e-4,
            roots: 128,
            branching: 4,
            depth: 3,
            exclusive: 1.0,
            compensate: true,
            scale_children: true,
            correlation_rank: 25,
            correlation_scale: 0.1,
            ortho_steps: 100,
            ortho_lr: 3e-4,
            mean_start: 5.0,
            mean_end: 4.0,
            std_mean: 0.5,
            std_std: 0.5,
            bias_norm: 0.5,
        }
    }
}

/// A spec file: an optional preset, then any keys.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SpecFile {
    preset: Option<String>,
    #[serde(flatten)]
    rest: toml::Table,
}

impl BenchSpec {
    /// A preset by name.
    pub fn preset(name: &str) -> Result<BenchSpec, SynthError> {
        match name {
            PRESET_16K => Ok(BenchSpec::default()),
            PRESET_TINY => Ok(BenchSpec {
                features: 1024,
                dims: 96,
                roots: 16,
                correlation_rank: 8,
                ortho_steps: 20,
                ortho_lr: 1e-3,
                ..BenchSpec::default()
            }),
            other => spec(format!(
                "unknown preset `{other}`: use {} or a spec .toml file",
                PRESETS.join(", ")
            )),
        }
    }

    /// A preset name, or a spec TOML file (its `preset` key, if any, is the base).
    pub fn load(source: &str) -> Result<BenchSpec, SynthError> {
        if PRESETS.contains(&source) {
            return BenchSpec::preset(source);
        }
        let path = Path::new(source);
        if !path.is_file() {
            return spec(format!(
                "`{source}`: neither a preset ({}) nor a spec file",
                PRESETS.join(", ")
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| SynthError::file(path, e))?;
        BenchSpec::from_toml(&text).map_err(|e| SynthError::file(path, e))
    }

    /// Parses a spec file's text.
    pub fn from_toml(text: &str) -> Result<BenchSpec, SynthError> {
        let file: SpecFile = toml::from_str(text).map_err(|e| SynthError::Spec(e.to_string()))?;
        let base = match &file.preset {
            Some(p) => BenchSpec::preset(p)?,
            None => BenchSpec::default(),
        };
        let mut table =
            toml::Table::try_from(&base).map_err(|e| SynthError::Spec(e.to_string()))?;
        table.extend(file.rest);
        let spec: BenchSpec = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| SynthError::Spec(e.message().to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    /// The spec as a TOML file (every key).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Identifies the generated model: sha256 of the spec's TOML (a resumed run checks it).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(self.to_toml().as_bytes());
        format!("synth-bench:{}", &hex::encode(h)[..16])
    }

    /// Features inside the hierarchy (the first ones): roots · (1 + b + ... + b^depth), at most
    /// `features`.
    pub fn hierarchy_size(&self) -> usize {
        if self.roots == 0 {
            return 0;
        }
        let mut level = self.roots;
        let mut total = self.roots;
        for _ in 0..self.depth {
            level = level.saturating_mul(self.branching);
            total = total.saturating_add(level);
        }
        total.min(self.features)
    }

    /// Checks the values; the message names the flag (and config key) at fault.
    // `!(x > 0.0)` on purpose: a NaN setting fails the check too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn check(&self) -> Result<(), SynthError> {
        if self.features == 0 || self.dims == 0 {
            return spec("--features and --dims must be at least 1");
        }
        if !(self.zipf_exponent > 0.0) {
            return spec(format!(
                "--zipf-exponent {}: must be positive",
                self.zipf_exponent
            ));
        }
        if !(0.0 < self.p_min && self.p_min < self.p_max && self.p_max <= 1.0) {
            return spec(format!(
                "--p-min {} / --p-max {}: need 0 < p-min < p-max <= 1",
                self.p_min, self.p_max
            ));
        }
        if self.roots > 0 && (self.branching < 2 || self.depth < 1) {
            return spec("--branching must be at least 2 and --depth at least 1 (or --roots 0)");
        }
        if self.roots > self.features {
            // More roots than features would be silently cut to `--features`, and the spec
            // saved with the truth would then not describe the data.
            return spec(format!(
                "--roots {}: more than --features {}",
                self.roots, self.features
            ));
        }
        if !(0.0..=1.0).contains(&self.exclusive) {
            return spec(format!("--exclusive {}: must be in [0, 1]", self.exclusive));
        }
        if !(self.correlation_scale >= 0.0) {
            return spec("--correlation-scale must be non-negative");
        }
        if !(self.ortho_lr > 0.0) {
            return spec(format!("--ortho-lr {}: must be positive", self.ortho_lr));
        }
        if !(self.mean_start > 0.0 && self.mean_end > 0.0) {
            return spec("--mean-start and --mean-end must be positive");
        }
        if !(self.std_mean.is_finite() && self.std_std > 0.0) {
            return spec("--std-std must be positive (and --std-mean finite)");
        }
        if !(self.bias_norm >= 0.0) {
            return spec("--bias-norm must be non-negative");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_its_preset() {
        let s = BenchSpec::from_toml("preset = \"synth-sae-bench-tiny\"\nseed = 7\np-max = 0.3\n")
            .unwrap();
        assert_eq!((s.features, s.dims, s.seed, s.p_max), (1024, 96, 7, 0.3));
        assert_eq!(BenchSpec::from_toml(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e = BenchSpec::from_toml("p-maxx = 0.3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p-maxx"), "{e}");
        let e = BenchSpec::from_toml("p-min = 0.5").unwrap_err().to_string();
        assert!(e.contains("--p-min"), "{e}");
    }

    #[test]
    fn hierarchy_size_of_the_16k_preset() {
        // 128 · (1 + 4 + 16 + 64)
        assert_eq!(BenchSpec::default().hierarchy_size(), 10_880);
    }
}
