//! Training configuration: the three recipes, every knob with its default, the TOML file and
//! command-line overrides, validated once into [`TrainConfig`]; schedules are methods.
//!
//! Precedence: recipe defaults < `--config FILE.toml` < command-line flags. The resolved config
//! is saved in the run folder as `config.toml`, which `--resume` reads back.
//!
//! The default learning rate depends on the run's length (see [`default_lr`]): a fixed small
//! rate tuned for runs of hundreds of millions of tokens cannot converge in a few hundred steps.
//!
//! Where a knob goes, `--lr` for one: it is the field [`PartialConfig::lr`], which is at once
//! the flag (clap, flattened into `TrainArgs` in src/cli/train.rs), the `lr` key of a `--config`
//! file and of a run config's `[train]` section (serde). [`TrainConfig::resolve`] gives it its
//! default and checks it into [`TrainConfig::lr`]; the trainer reads it through
//! [`TrainConfig::lr_at`] (config/schedule.rs) at every step. The recipes and engines are in
//! config/recipe.rs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Result, SaeError};

mod recipe;
mod schedule;
mod validate;

pub use recipe::{EngineChoice, Recipe};
pub use schedule::default_lr;

/// `--target-l0-anneal`'s default ([`super::target_l0`]): on SynthSAEBench-16k at 4M samples
/// steered to L0 20 this way, gated ends with F1 0.674 and MCC 0.621 (0.247 and 0.369 steered to
/// 20 from the start), and april-2024 with 0.326 and 0.368 (0.196 and 0.308; 0.290 and 0.344 at
/// a fixed λ); BENCHMARKS.md, "The annealed target".
pub const DEFAULT_TARGET_L0_ANNEAL: f64 = 0.75;

/// Every setting, all optional: what a TOML file or the command line gives. This one type is
/// the train command's flags (clap), a `--config` file's keys and a run config's `[train]`
/// section (serde), so a knob is one field here. A `--config` file spells keys as the flags do
/// (`d-sae`, `l1-coefficient`) or in snake_case (`d_sae`, as the saved `config.toml` does); both
/// are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct PartialConfig {
    /// Activation dataset folder (from `unravel extract`).
    #[arg(long, value_name = "DIR")]
    pub acts: Option<PathBuf>,
    /// Train on rows streamed from a synthetic generator instead of a dataset (no shards
    /// written): a preset (`synth-sae-bench-16k`, `synth-sae-bench-tiny`) or a spec TOML file
    /// (the keys of `unravel synth --bench-spec`).
    #[arg(long, value_name = "PRESET_OR_SPEC", conflicts_with = "acts")]
    pub synth: Option<String>,
    /// Hook (column) to train on; may be left out when the dataset holds one hook.
    #[arg(long)]
    pub hook: Option<String>,
    /// april-2024 (default), unit-norm or gated: on the command line a string (`TrainArgs`), parsed
    /// with its own message.
    #[arg(skip)]
    pub recipe: Option<Recipe>,
    /// Features, as a multiple of the hook's width (default 8).
    #[arg(long, value_parser = crate::flag_values::positive_f64, allow_negative_numbers = true)]
    pub expansion: Option<f64>,
    /// Features (instead of --expansion).
    #[arg(long, value_parser = crate::flag_values::at_least_1::<usize>, allow_negative_numbers = true)]
    #[serde(alias = "d-sae")]
    pub d_sae: Option<usize>,
    /// Training tokens (default 10M).
    #[arg(long, value_parser = crate::flag_values::at_least_1::<u64>, allow_negative_numbers = true)]
    pub tokens: Option<u64>,
    /// Tokens per step (default 4096).
    #[arg(long, value_parser = crate::flag_values::at_least_1::<usize>, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Learning rate. Default: by the run's length, 1e-3 · √(250 / steps) within [5e-5, 1e-3]
    /// (unit-norm: [1e-4, 1e-3]); at batch 4096: 1e-3 up to 1M tokens, 3.2e-4 at 10M, 1.4e-4
    /// at 50M, 5e-5 from 400M on.
    #[arg(long, value_parser = crate::flag_values::positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// L1 coefficient λ (default 5).
    #[arg(long, value_parser = crate::flag_values::non_negative_f32, allow_negative_numbers = true)]
    #[serde(alias = "l1-coefficient")]
    pub l1_coefficient: Option<f32>,
    /// Steer λ so that the SAE ends at this L0 (mean active features per token): after λ's
    /// warm-up, λ (starting at --l1-coefficient) is raised while the batches' L0 is above K and
    /// lowered while below (docs/design.md, "Target L0"); λ is logged in metrics.jsonl.
    #[arg(long, value_name = "K", value_parser = crate::flag_values::positive_f64, allow_negative_numbers = true)]
    #[serde(alias = "target-l0")]
    pub target_l0: Option<f64>,
    /// With --target-l0: the fraction of the run after which λ is steered (default: the end of
    /// λ's warm-up); before it λ is --l1-coefficient as scheduled.
    #[arg(long, value_name = "FRAC", value_parser = crate::flag_values::fraction, allow_negative_numbers = true)]
    #[serde(alias = "target-l0-from")]
    pub target_l0_from: Option<f64>,
    /// With --target-l0: the fraction of the run by which the steered target reaches K, moving
    /// log-linearly from the L0 at the first steered step (default 0.75; 0: K from the start).
    #[arg(long, value_name = "FRAC", value_parser = crate::flag_values::fraction, allow_negative_numbers = true)]
    #[serde(alias = "target-l0-anneal")]
    pub target_l0_anneal: Option<f64>,
    /// Seed of the initialisation and the shuffle.
    #[arg(long, value_parser = crate::flag_values::whole::<u64>, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long)]
    pub device: Option<String>,
    /// Step implementation: on the command line a string (`TrainArgs`), parsed with its own
    /// message.
    #[arg(skip)]
    pub engine: Option<EngineChoice>,
    /// Shards held out for evaluation (the last ones; default 1; 0 = evaluate on training data).
    /// More are added while they hold fewer than --eval-tokens rows and stay within a tenth of
    /// the rows; the split is printed before training.
    #[arg(long, value_parser = crate::flag_values::whole::<usize>, allow_negative_numbers = true)]
    #[serde(alias = "eval-shards")]
    pub eval_shards: Option<usize>,
    /// Tokens per evaluation (default 200k).
    #[arg(long, value_parser = crate::flag_values::at_least_1::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "eval-tokens")]
    pub eval_tokens: Option<u64>,
    /// Evaluate every N training tokens (default: only at the end).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::whole::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "eval-every")]
    pub eval_every: Option<u64>,
    /// Append a metrics.jsonl line every N steps (default 10).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::at_least_1::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "log-every")]
    pub log_every: Option<u64>,
    /// Checkpoint every N tokens (default 5M).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::whole::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "checkpoint-every")]
    pub checkpoint_every: Option<u64>,
    /// A feature is dead when it did not fire in this many tokens (default min(10M, --tokens)).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::at_least_1::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "dead-window")]
    pub dead_window: Option<u64>,
    /// Shuffle window in tokens (default 65536).
    #[arg(long, value_parser = crate::flag_values::at_least_1::<usize>, allow_negative_numbers = true)]
    #[serde(alias = "shuffle-buffer")]
    pub shuffle_buffer: Option<usize>,
    /// Fraction of steps with a linearly rising learning rate (default 0).
    #[arg(long, value_parser = crate::flag_values::fraction, allow_negative_numbers = true)]
    #[serde(alias = "lr-warmup-frac")]
    pub lr_warmup_frac: Option<f64>,
    /// Fraction of steps, at the end, with the learning rate falling linearly to 0 (default 0.2;
    /// unit-norm: 0).
    #[arg(long, value_parser = crate::flag_values::fraction, allow_negative_numbers = true)]
    #[serde(alias = "lr-decay-frac")]
    pub lr_decay_frac: Option<f64>,
    /// Fraction of steps with λ rising linearly to --l1-coefficient (default 0.05; unit-norm: 0).
    #[arg(long, value_parser = crate::flag_values::fraction, allow_negative_numbers = true)]
    #[serde(alias = "l1-warmup-frac")]
    pub l1_warmup_frac: Option<f64>,
    /// Global gradient-norm clip (default 1; unit-norm: none).
    #[arg(long, value_parser = crate::flag_values::positive_f32, allow_negative_numbers = true)]
    #[serde(alias = "clip-norm")]
    pub clip_norm: Option<f32>,
    /// Adam β1 (default 0.9).
    #[arg(long, value_parser = crate::flag_values::adam_beta, allow_negative_numbers = true)]
    pub beta1: Option<f32>,
    /// Adam β2 (default 0.999).
    #[arg(long, value_parser = crate::flag_values::adam_beta, allow_negative_numbers = true)]
    pub beta2: Option<f32>,
    /// Adam ε (default 1e-8).
    #[arg(long, value_parser = crate::flag_values::positive_f32, allow_negative_numbers = true)]
    #[serde(alias = "adam-eps")]
    pub adam_eps: Option<f32>,
    /// Decoder row norm at initialisation (april-2024; default 0.1).
    #[arg(long, value_parser = crate::flag_values::positive_f32, allow_negative_numbers = true)]
    #[serde(alias = "dec-init-norm")]
    pub dec_init_norm: Option<f32>,
    /// Tokens sampled to estimate the input scaling and the geometric median (default 65536).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::at_least_1::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "scale-tokens")]
    pub scale_tokens: Option<u64>,
    /// Resample dead features every N tokens (default: unit-norm --tokens / 4; april-2024 0 = never).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::whole::<u64>, allow_negative_numbers = true)]
    #[serde(alias = "resample-every")]
    pub resample_every: Option<u64>,
    /// Inputs scored to pick the new directions when resampling (default 16384).
    #[arg(long, value_name = "N", value_parser = crate::flag_values::at_least_1::<usize>, allow_negative_numbers = true)]
    #[serde(alias = "resample-inputs")]
    pub resample_inputs: Option<usize>,
    /// From the shared reading flags (`--skip-nonfinite`).
    #[arg(skip)]
    #[serde(alias = "skip-nonfinite")]
    pub skip_nonfinite: Option<bool>,
    /// From the shared reading flags (`--allow-incomplete`).
    #[arg(skip)]
    #[serde(alias = "allow-incomplete")]
    pub allow_incomplete: Option<bool>,
    /// Train on special-token rows (BOS/CLS/SEP) too (config files only).
    #[arg(skip)]
    #[serde(alias = "include-special")]
    pub include_special: Option<bool>,
    /// Start from this SAELens-layout SAE: a folder, or OWNER/REPO[/SUBFOLDER] on the hub.
    #[arg(long, value_name = "DIR_OR_HUB")]
    pub from: Option<String>,
}

impl PartialConfig {
    /// Reads a TOML file; unknown keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<PartialConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| SaeError::File {
            path: path.to_path_buf(),
            reason: format!("cannot read the config: {e}"),
        })?;
        toml::from_str(&text).map_err(|e| SaeError::File {
            path: path.to_path_buf(),
            reason: format!("bad config: {}", e.to_string().replace('\n', " ")),
        })
    }

    /// `self` with every field that `over` sets replaced.
    pub fn overridden_by(self, over: PartialConfig) -> PartialConfig {
        macro_rules! pick {
            ($($f:ident),*) => { PartialConfig { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            acts,
            synth,
            hook,
            recipe,
            d_sae,
            expansion,
            tokens,
            batch,
            lr,
            l1_coefficient,
            target_l0,
            target_l0_from,
            target_l0_anneal,
            lr_warmup_frac,
            lr_decay_frac,
            l1_warmup_frac,
            clip_norm,
            beta1,
            beta2,
            adam_eps,
            dec_init_norm,
            seed,
            shuffle_buffer,
            eval_shards,
            eval_tokens,
            eval_every,
            log_every,
            checkpoint_every,
            dead_window,
            scale_tokens,
            resample_every,
            resample_inputs,
            skip_nonfinite,
            allow_incomplete,
            include_special,
            engine,
            device,
            from
        )
    }
}

/// A validated configuration: what the trainer runs. Saved as the run's `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The activation dataset folder (a streamed run: its `synth` spec).
    pub acts: PathBuf,
    /// Rows streamed from this synthetic generator (preset or spec file) instead of `acts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth: Option<String>,
    /// The hook (column) trained on.
    pub hook: String,
    pub recipe: Recipe,
    pub d_in: usize,
    pub d_sae: usize,
    /// Training tokens.
    pub tokens: u64,
    /// Tokens per step.
    pub batch: usize,
    /// Peak learning rate (`--lr`, else [`default_lr`]); the rate of step t is
    /// [`TrainConfig::lr_at`].
    pub lr: f32,
    /// λ (`--l1-coefficient`); the value of step t is [`TrainConfig::l1_at`].
    pub l1_coefficient: f32,
    /// Steer λ to end at this L0 ([`super::target_l0`]); absent: λ as scheduled.
    #[serde(default)]
    pub target_l0: Option<f64>,
    /// Fraction of the run after which λ is steered (absent: the end of λ's warm-up).
    #[serde(default)]
    pub target_l0_from: Option<f64>,
    /// Fraction of the run by which the steered target has annealed to K (absent: K throughout,
    /// as in runs saved before it existed).
    #[serde(default)]
    pub target_l0_anneal: Option<f64>,
    /// Fraction of steps with linearly rising LR (0: none).
    pub lr_warmup_frac: f64,
    /// Fraction of steps, at the end, with LR falling linearly to 0.
    pub lr_decay_frac: f64,
    /// Fraction of steps with λ rising linearly from λ/warm-up steps to λ.
    pub l1_warmup_frac: f64,
    /// Global gradient-norm clip (absent: none).
    pub clip_norm: Option<f32>,
    pub beta1: f32,
    pub beta2: f32,
    pub adam_eps: f32,
    /// Decoder row norm at init (april-2024).
    pub dec_init_norm: f32,
    pub seed: u64,
    /// Loader shuffle window, in tokens.
    pub shuffle_buffer: usize,
    /// Shards held out for evaluation (the last ones).
    pub eval_shards: usize,
    /// Tokens per held-out evaluation (at most the held-out set).
    pub eval_tokens: u64,
    /// Evaluate every this many training tokens (0: only at the end).
    pub eval_every: u64,
    /// Append to metrics.jsonl every this many steps.
    pub log_every: u64,
    /// Checkpoint every this many tokens (0: only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    /// A feature is dead when it did not fire in this many tokens.
    pub dead_window: u64,
    /// Tokens sampled to estimate the input scaling (and the geometric median).
    pub scale_tokens: u64,
    /// Resample dead features every this many tokens (unit-norm; 0: never).
    pub resample_every: u64,
    /// Inputs scored to pick the new directions when resampling.
    pub resample_inputs: usize,
    /// Drop rows with NaN/Inf activations instead of stopping.
    pub skip_nonfinite: bool,
    /// Train on a dataset whose manifest says it is incomplete.
    #[serde(default)]
    pub allow_incomplete: bool,
    /// Train on special-token rows (BOS/CLS/SEP) too.
    pub include_special: bool,
    pub engine: EngineChoice,
    pub device: String,
    /// Start from this SAELens-layout SAE (local folder or hub repo[/subfolder]).
    pub from: Option<String>,
}

impl TrainConfig {
    /// Resolves a partial config against a dataset's hooks: `hooks` are the (name, d) pairs of
    /// the dataset at `acts`.
    pub fn resolve(p: PartialConfig, hooks: &[(String, usize)]) -> Result<TrainConfig> {
        let bad = |m: String| Err(SaeError::Config(m));
        let acts = match (p.acts, &p.synth) {
            (Some(_), Some(_)) => return bad("give --acts or --synth, not both".into()),
            (Some(a), None) => a,
            (None, Some(spec)) => PathBuf::from(spec),
            (None, None) => {
                return bad(
                    "no activation dataset: pass --acts DIR (or `acts` in the config)".into(),
                )
            }
        };
        let hook = match (p.hook, hooks) {
            (Some(h), _) => h,
            (None, [(only, _)]) => only.clone(),
            (None, _) => {
                let names: Vec<&str> = hooks.iter().map(|(n, _)| n.as_str()).collect();
                return bad(format!(
                    "{} holds {} hooks; choose one with --hook ({})",
                    acts.display(),
                    names.len(),
                    names.join(", ")
                ));
            }
        };
        let Some(&(_, d_in)) = hooks.iter().find(|(n, _)| *n == hook) else {
            let names: Vec<&str> = hooks.iter().map(|(n, _)| n.as_str()).collect();
            return bad(format!(
                "--hook {hook}: not in {} (it holds: {})",
                acts.display(),
                names.join(", ")
            ));
        };
        let d_sae = match (p.d_sae, p.expansion) {
            (Some(_), Some(_)) => return bad("give --d-sae or --expansion, not both".into()),
            (Some(n), None) => n,
            (None, Some(e)) if e > 0.0 => (e * d_in as f64).round() as usize,
            (None, Some(e)) => return bad(format!("--expansion {e}: must be positive")),
            (None, None) => 8 * d_in,
        };
        let recipe = p.recipe.unwrap_or(Recipe::April2024);
        // The gated recipe keeps april-2024's schedules and clip (SAELens clips at 1.0 too).
        let april = recipe != Recipe::UnitNorm;
        let tokens = p.tokens.unwrap_or(10_000_000);
        let batch = p.batch.unwrap_or(4096);
        let cfg = TrainConfig {
            acts,
            synth: p.synth,
            hook,
            recipe,
            d_in,
            d_sae,
            tokens,
            batch,
            lr: p
                .lr
                .unwrap_or_else(|| default_lr(recipe, tokens.div_ceil(batch.max(1) as u64))),
            l1_coefficient: p.l1_coefficient.unwrap_or(5.0),
            target_l0: p.target_l0,
            target_l0_from: p.target_l0_from,
            target_l0_anneal: p
                .target_l0_anneal
                .or(p.target_l0.map(|_| DEFAULT_TARGET_L0_ANNEAL)),
            lr_warmup_frac: p.lr_warmup_frac.unwrap_or(0.0),
            lr_decay_frac: p.lr_decay_frac.unwrap_or(if april { 0.2 } else { 0.0 }),
            l1_warmup_frac: p.l1_warmup_frac.unwrap_or(if april { 0.05 } else { 0.0 }),
            clip_norm: p.clip_norm.or(if april { Some(1.0) } else { None }),
            beta1: p.beta1.unwrap_or(0.9),
            beta2: p.beta2.unwrap_or(0.999),
            adam_eps: p.adam_eps.unwrap_or(1e-8),
            dec_init_norm: p.dec_init_norm.unwrap_or(0.1),
            seed: p.seed.unwrap_or(0),
            shuffle_buffer: p
                .shuffle_buffer
                .unwrap_or(crate::store::DEFAULT_SHUFFLE_BUFFER),
            eval_shards: p.eval_shards.unwrap_or(1),
            eval_tokens: p.eval_tokens.unwrap_or(200_000),
            eval_every: p.eval_every.unwrap_or(0),
            log_every: p.log_every.unwrap_or(10),
            checkpoint_every: p.checkpoint_every.unwrap_or(5_000_000),
            dead_window: p.dead_window.unwrap_or(10_000_000.min(tokens)),
            scale_tokens: p.scale_tokens.unwrap_or(65_536),
            resample_every: p
                .resample_every
                .unwrap_or(if april { 0 } else { tokens / 4 }),
            resample_inputs: p.resample_inputs.unwrap_or(16_384),
            skip_nonfinite: p.skip_nonfinite.unwrap_or(false),
            allow_incomplete: p.allow_incomplete.unwrap_or(false),
            include_special: p.include_special.unwrap_or(false),
            engine: p.engine.unwrap_or(EngineChoice::Auto),
            device: p.device.unwrap_or_else(|| "auto".into()),
            from: p.from,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The fields whose change makes a resumed run differ from the original.
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = toml::Value::try_from(self).ok();
        let b = toml::Value::try_from(other).ok();
        let (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) = (a, b) else {
            return vec!["(cannot compare)".into()];
        };
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let show =
                    |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
                format!("{k}: {} vs {}", show(a.get(k)), show(b.get(k)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks() -> Vec<(String, usize)> {
        vec![
            ("blocks.0.hook_resid_post".into(), 16),
            ("blocks.1.hook_resid_post".into(), 16),
        ]
    }

    fn base() -> PartialConfig {
        PartialConfig {
            acts: Some("acts".into()),
            hook: Some("blocks.1.hook_resid_post".into()),
            tokens: Some(100 * 4096),
            ..Default::default()
        }
    }

    #[test]
    fn april_schedules() {
        let c = TrainConfig::resolve(base(), &hooks()).unwrap();
        assert_eq!((c.d_in, c.d_sae, c.total_steps()), (16, 128, 100));
        // λ warms up over 5 steps, LR decays over the last 20.
        assert!((c.l1_at(0) - 1.0).abs() < 1e-6 && (c.l1_at(4) - 5.0).abs() < 1e-6);
        assert_eq!(c.lr_at(0), c.lr);
        assert_eq!(c.lr_at(80), c.lr);
        assert!((c.lr_at(90) - c.lr * 0.5).abs() < 1e-9);
        assert!((c.lr_at(99) - c.lr * 0.05).abs() < 1e-9);
        assert_eq!(c.clip_norm, Some(1.0));
    }

    #[test]
    fn choosing_the_hook_and_size() {
        let mut p = base();
        p.hook = None;
        let e = TrainConfig::resolve(p.clone(), &hooks())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--hook") && e.contains("blocks.0.hook_resid_post"),
            "{e}"
        );
        let one = vec![("h".to_string(), 8)];
        p.expansion = Some(4.0);
        let c = TrainConfig::resolve(p.clone(), &one).unwrap();
        assert_eq!((c.hook.as_str(), c.d_sae), ("h", 32));
        p.d_sae = Some(10);
        assert!(TrainConfig::resolve(p, &one).is_err());
    }

    #[test]
    fn the_gated_recipe_keeps_april_2024_schedules() {
        let file: PartialConfig = toml::from_str("recipe = \"gated\"").unwrap();
        let c = TrainConfig::resolve(file.overridden_by(base()), &hooks()).unwrap();
        assert_eq!(c.recipe, Recipe::Gated);
        assert_eq!(
            (
                c.lr_decay_frac,
                c.l1_warmup_frac,
                c.clip_norm,
                c.resample_every
            ),
            (0.2, 0.05, Some(1.0), 0)
        );
        assert!(toml::to_string(&c).unwrap().contains("recipe = \"gated\""));
        assert_eq!(Recipe::parse("gated").unwrap(), Recipe::Gated);
        assert!(Recipe::parse("topk")
            .unwrap_err()
            .to_string()
            .contains("gated"));
    }

    #[test]
    fn toml_overrides_and_differences() {
        let file: PartialConfig =
            toml::from_str("recipe = \"unit-norm\"\nlr = 0.001\nbatch = 512").unwrap();
        let cli = PartialConfig {
            lr: Some(0.002),
            ..base()
        };
        let c = TrainConfig::resolve(file.overridden_by(cli), &hooks()).unwrap();
        assert_eq!(
            (c.recipe, c.lr, c.batch, c.clip_norm),
            (Recipe::UnitNorm, 0.002, 512, None)
        );
        let text = toml::to_string(&c).unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let mut other = c.clone();
        other.seed = 9;
        assert_eq!(c.differences(&other), vec!["seed: 0 vs 9".to_string()]);
        assert!(toml::from_str::<PartialConfig>("learning_rate = 1").is_err());
    }

    #[test]
    fn the_default_lr_follows_the_run_length() {
        let lr = |tokens: u64| {
            let p = PartialConfig {
                tokens: Some(tokens),
                ..base()
            };
            TrainConfig::resolve(p, &hooks()).unwrap().lr
        };
        assert_eq!(lr(1_000_000), 1e-3);
        assert!((lr(10_000_000) - 3.2e-4).abs() < 1e-5, "{}", lr(10_000_000));
        assert!(
            (lr(50_000_000) - 1.43e-4).abs() < 1e-5,
            "{}",
            lr(50_000_000)
        );
        assert_eq!(lr(2_000_000_000), 5e-5);
        assert_eq!(default_lr(Recipe::UnitNorm, 1_000_000), 1e-4);
        // A given lr is kept.
        let p = PartialConfig {
            lr: Some(0.02),
            ..base()
        };
        assert_eq!(TrainConfig::resolve(p, &hooks()).unwrap().lr, 0.02);
    }

    #[test]
    fn target_l0_is_a_key_and_is_checked() {
        let file: PartialConfig = toml::from_str("target-l0 = 25.0").unwrap();
        let c = TrainConfig::resolve(file.overridden_by(base()), &hooks()).unwrap();
        assert_eq!(c.target_l0, Some(25.0));
        let back: TrainConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.target_l0, Some(25.0));
        // A saved config of an older version, without the key, reads as no target.
        assert_eq!(
            TrainConfig::resolve(base(), &hooks()).unwrap().target_l0,
            None
        );
        let p = PartialConfig {
            target_l0: Some(25.0),
            l1_coefficient: Some(0.0),
            ..base()
        };
        let e = TrainConfig::resolve(p, &hooks()).unwrap_err().to_string();
        assert!(
            e.contains("--target-l0") && e.contains("--l1-coefficient 0"),
            "{e}"
        );
        let p = PartialConfig {
            target_l0: Some(f64::NAN),
            ..base()
        };
        assert!(TrainConfig::resolve(p, &hooks()).is_err());
        // The steering's shape is saved (the anneal by default), and needs a target.
        let anneal = |c: TrainConfig| (c.target_l0_from, c.target_l0_anneal);
        assert_eq!(anneal(c), (None, Some(0.75)));
        let p = PartialConfig {
            target_l0_anneal: Some(0.5),
            ..base()
        };
        let e = TrainConfig::resolve(p, &hooks()).unwrap_err().to_string();
        assert!(
            e.contains("--target-l0-anneal") && e.contains("give --target-l0 K"),
            "{e}"
        );
    }

    #[test]
    fn config_files_take_flag_spellings_too() {
        let kebab: PartialConfig =
            toml::from_str("d-sae = 64\nl1-coefficient = 2.0\neval-tokens = 100").unwrap();
        let snake: PartialConfig =
            toml::from_str("d_sae = 64\nl1_coefficient = 2.0\neval_tokens = 100").unwrap();
        assert_eq!(kebab, snake);
        assert_eq!(kebab.d_sae, Some(64));
    }

    #[test]
    fn the_memory_estimate_counts_weights_moments_and_batches() {
        let mut c = TrainConfig::resolve(base(), &hooks()).unwrap();
        c.d_sae = 100_000_000;
        c.d_in = 256;
        // 7 copies of the 5.13e10 parameters (1.44 TB), 3 batch × d_sae buffers (4.92 TB) and
        // W_enc in bf16 (51 GB).
        assert_eq!(c.memory_bytes(), 6_402_942_613_504);
        c.d_sae = 128;
        c.d_in = 16;
        assert_eq!(
            c.memory_bytes(),
            4 * (7 * (2 * 128 * 16 + 128 + 16)
                + 3 * 4096 * 128
                + 2 * 4096 * 16
                + 2 * 65536 * 16
                + 128 * 16 / 2)
        );
    }
}
