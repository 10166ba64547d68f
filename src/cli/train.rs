//! `unravel train`: flags → config → `sae::train`; the progress bar and the summary.
//!
//! The flags are [`TrainArgs`]: the few this command reads itself (`--out`, `--config`,
//! `--resume`, `--recipe`, `--engine`) and every training knob (`--lr`, `--d-sae`, …) as the
//! flattened [`PartialConfig`] of src/sae/config.rs, whose module doc follows a flag from here
//! to the trainer. [`cmd_train`] layers them: config file < flags (or the saved config of
//! `--resume` < flags), then [`TrainConfig::resolve`] fills in the defaults and checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use unravel::sae::checkpoint;
use unravel::sae::config::{EngineChoice, PartialConfig, Recipe, TrainConfig};
use unravel::sae::train::{self, EvalRecord, TrainObserver, TrainSummary};
use unravel::sae::SaeError;
use unravel::store::Dataset;

use crate::cli::progress::progress_bar;
use crate::cli::read_args::ReadArgs;
use crate::cli::Exit;

pub const TRAIN_EXAMPLES: &str = "Examples:\n  \
# GPT-2 layer 6 residual stream, 8x expansion, 50M tokens (april-2024 recipe)\n  \
unravel train --acts acts/gpt2-resid --hook blocks.6.hook_resid_post --expansion 8 --tokens 50000000 --out runs/l6\n\n  \
# the same from a config file, overriding one value\n  \
unravel train --config configs/gpt2-l6.toml --l1-coefficient 3 --out runs/l6-l1-3\n\n  \
# continue after Ctrl-C, a crash or kill -9 (bit-identical to an uninterrupted run on CPU)\n  \
unravel train --resume runs/l6\n\n  \
# streamed from the SynthSAEBench generator, no shards written (a small preset here; the\n  \
# benchmark itself: --synth synth-sae-bench-16k, or end to end: unravel run configs/synth-sae-bench.toml)\n  \
unravel train --synth synth-sae-bench-tiny --d-sae 256 --tokens 50000 --batch 1024 --out runs/bench-tiny\n\n  \
# a gated SAE with an L1-penalised gate (Rajamanoharan et al. 2024; exported as SAELens's `gated`)\n  \
unravel train --synth synth-sae-bench-tiny --recipe gated --d-sae 256 --tokens 50000 --batch 1024 --out runs/bench-gated\n\n  \
# Towards-Monosemanticity recipe on a GPU\n  \
unravel train --acts acts/gpt2-resid --hook blocks.6.hook_resid_post --recipe unit-norm --d-sae 16384 --device cuda --out runs/l6-un\n\n\
The run folder holds config.toml, metrics.jsonl (one JSON line per log step and evaluation), eval.json,\n\
checkpoints/ (exact resume), and the SAELens export: cfg.json, sae_weights.safetensors, sparsity.safetensors\n\
(load it with `sae_lens.SAE.load_from_disk(\"runs/l6\")`).";

/// Flags of `unravel train`; every one overrides the config file.
#[derive(Args)]
pub struct TrainArgs {
    /// Output run folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// TOML config (see configs/); flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (uses its saved config).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["acts", "config", "synth"])]
    resume: Option<PathBuf>,
    /// april-2024 (default), unit-norm, or gated (a gated SAE with an L1-penalised gate, as SAELens's `gated`).
    #[arg(long)]
    recipe: Option<String>,
    /// Step implementation: auto (fast sparse on CPU, plain candle ops elsewhere), fast or plain.
    #[arg(long)]
    engine: Option<String>,
    /// Every other training setting (`--acts`, `--lr`, ...): its flags, the keys of a `--config`
    /// file and of a run config's `[train]` section are the fields of this one type.
    #[command(flatten)]
    settings: PartialConfig,
    #[command(flatten)]
    read: ReadArgs,
}

impl TrainArgs {
    /// The settings given on the command line; `--recipe` and `--engine` parsed here for their
    /// messages, the reading flags from the shared ones.
    fn partial(&self) -> Result<PartialConfig> {
        Ok(PartialConfig {
            recipe: self
                .recipe
                .as_deref()
                .map(Recipe::parse)
                .transpose()
                .context("--recipe")?,
            engine: self.engine.as_deref().map(parse_engine).transpose()?,
            skip_nonfinite: self.read.skip_nonfinite.then_some(true),
            allow_incomplete: self.read.allow_incomplete.then_some(true),
            ..self.settings.clone()
        })
    }
}

fn parse_engine(s: &str) -> Result<EngineChoice> {
    match s {
        "auto" => Ok(EngineChoice::Auto),
        "fast" => Ok(EngineChoice::Fast),
        "plain" => Ok(EngineChoice::Plain),
        o => bail!("--engine {o}: expected auto, fast or plain"),
    }
}

fn hooks_of(acts: &Path, read: &ReadArgs) -> Result<Vec<(String, usize)>> {
    let ds = Dataset::open_with(acts, read.options())?;
    Ok(ds
        .manifest()
        .hooks
        .iter()
        .map(|h| (h.name.clone(), h.d))
        .collect())
}

/// The (hook, d) pairs a new run trains on: the dataset's (`--acts`), or the generator's one
/// `synthetic` hook (`--synth`).
fn input_hooks(p: &PartialConfig, read: &ReadArgs) -> Result<Vec<(String, usize)>> {
    Ok(match (&p.acts, &p.synth) {
        (Some(acts), None) => hooks_of(acts, read)?,
        (None, Some(spec)) => {
            let spec = unravel::synth::bench::BenchSpec::load(spec)
                .map_err(|e| anyhow::anyhow!("--synth {e}"))?;
            vec![(unravel::synth::planted::SYNTH_HOOK.to_string(), spec.dims)]
        }
        (Some(_), Some(_)) => bail!("give --acts or --synth, not both"),
        (None, None) => bail!(
            "--acts DIR is required (an activation dataset from `unravel extract`), or --synth PRESET_OR_SPEC"
        ),
    })
}

/// The progress bar: loss, L0, dead %, tokens/s, ETA.
struct Bar {
    bar: indicatif::ProgressBar,
    batch: u64,
}

impl Bar {
    /// A line above the bar, or on stderr when there is no bar (not a terminal).
    fn say(&self, msg: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", msg.as_ref());
        } else {
            self.bar.println(msg.as_ref());
        }
    }
}

impl TrainObserver for Bar {
    fn started(&mut self, total: u64, done: u64, batch: usize, engine: &str) {
        self.batch = batch as u64;
        self.bar.set_length(total * self.batch);
        self.bar.set_position(done * self.batch);
        self.bar.reset_eta();
        self.say(format!(
            "training on {engine}: {total} steps of {batch} tokens ({done} done)"
        ));
    }
    fn stepped(&mut self, step: u64, loss: f64, l0: f64, dead: f64) {
        self.bar.set_position(step * self.batch);
        self.bar.set_message(format!(
            "loss {loss:.4}  L0 {l0:.1}  dead {:.1}%",
            dead * 100.0
        ));
    }
    fn evaluated(&mut self, r: &EvalRecord) {
        self.say(format!(
            "eval at step {}: EV {:.4}  FVU {:.4}  MSE {:.4e}  L0 {:.1}  dead {:.1}%  dense {:.1}%  ({} {} tokens)",
            r.step, r.ev, r.fvu, r.mse, r.l0, r.dead_frac * 100.0, r.dense_frac * 100.0, r.tokens,
            if r.held_out { "held-out" } else { "training" }
        ));
    }
    fn checkpointed(&mut self, dir: &Path) {
        self.bar
            .set_message(format!("checkpoint {}", dir.display()));
    }
    fn note(&mut self, msg: &str) {
        self.say(msg);
    }
}

pub fn cmd_train(a: &TrainArgs) -> Result<()> {
    let (cfg, dir, resume) = match &a.resume {
        Some(dir) => {
            let saved = checkpoint::load_config(dir)?;
            if !checkpoint::has_checkpoint(dir) {
                bail!(
                    "--resume {}: the run has no checkpoint yet; start it again without --resume",
                    dir.display()
                );
            }
            // Flags given with --resume must agree with the saved config.
            let hooks = vec![(saved.hook.clone(), saved.d_in)];
            let mut p = a.partial()?;
            if saved.synth.is_none() {
                p.acts = Some(saved.acts.clone());
            }
            let given = PartialConfig {
                acts: None,
                ..p.clone()
            };
            if given != PartialConfig::default() {
                let requested =
                    TrainConfig::resolve(partial_from(&saved).overridden_by(p), &hooks)?;
                let diff = saved.differences(&requested);
                if !diff.is_empty() {
                    bail!(
                        "--resume {}: these settings differ from the run's config.toml: {}",
                        dir.display(),
                        diff.join("; ")
                    );
                }
            }
            (saved, dir.clone(), true)
        }
        None => {
            let Some(out) = &a.out else {
                bail!("--out DIR is required (the run folder)")
            };
            let file = match &a.config {
                Some(f) => PartialConfig::from_file(f)?,
                None => PartialConfig::default(),
            };
            let p = file.overridden_by(a.partial()?);
            let cfg = TrainConfig::resolve(p.clone(), &input_hooks(&p, &a.read)?)?;
            (cfg, out.clone(), false)
        }
    };
    let flag = if resume { "--resume" } else { "--out" };
    let _lock = unravel::folder_lock::lock_output(flag, &dir, "train")?;
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C exits at once.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let bar = progress_bar(
        "[{elapsed_precise}] {bar:25} {human_pos}/{human_len} tok  {per_sec}  ETA {eta}  {msg}",
    );
    let mut obs = Bar {
        bar: bar.clone(),
        batch: 1,
    };
    let result = match &cfg.synth {
        Some(spec) => {
            let model = synth_model(spec, &obs)?;
            train::train_streamed(&cfg, &dir, resume, model, &mut obs, &interrupt)
        }
        None => train::train(&cfg, &dir, resume, &mut obs, &interrupt),
    };
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            print_summary(&s);
            Ok(())
        }
        Err(SaeError::Interrupted) => Err(Exit {
            code: 130,
            message: format!(
                "interrupted: checkpoint saved; continue with `unravel train --resume {}`",
                dir.display()
            ),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The generator of `--synth` (a preset or a spec file), built (the dictionary orthogonalised)
/// with a progress bar.
fn synth_model(spec: &str, obs: &Bar) -> Result<Arc<unravel::synth::bench::BenchModel>> {
    let spec =
        unravel::synth::bench::BenchSpec::load(spec).map_err(|e| anyhow::anyhow!("--synth {e}"))?;
    obs.say(format!(
        "building the generator {} ({} features in {} dims, {} orthogonalisation steps)",
        spec.fingerprint(),
        spec.features,
        spec.dims,
        spec.ortho_steps
    ));
    let model = crate::cli::synth_bench::build_model(&spec);
    Ok(Arc::new(model))
}

/// A saved config as a partial one (every field set), so flags can be laid over it.
fn partial_from(c: &TrainConfig) -> PartialConfig {
    PartialConfig {
        acts: c.synth.is_none().then(|| c.acts.clone()),
        synth: c.synth.clone(),
        hook: Some(c.hook.clone()),
        recipe: Some(c.recipe),
        d_sae: Some(c.d_sae),
        expansion: None,
        tokens: Some(c.tokens),
        batch: Some(c.batch),
        lr: Some(c.lr),
        l1_coefficient: Some(c.l1_coefficient),
        target_l0: c.target_l0,
        target_l0_from: c.target_l0_from,
        target_l0_anneal: c.target_l0_anneal,
        lr_warmup_frac: Some(c.lr_warmup_frac),
        lr_decay_frac: Some(c.lr_decay_frac),
        l1_warmup_frac: Some(c.l1_warmup_frac),
        clip_norm: c.clip_norm,
        beta1: Some(c.beta1),
        beta2: Some(c.beta2),
        adam_eps: Some(c.adam_eps),
        dec_init_norm: Some(c.dec_init_norm),
        seed: Some(c.seed),
        shuffle_buffer: Some(c.shuffle_buffer),
        eval_shards: Some(c.eval_shards),
        eval_tokens: Some(c.eval_tokens),
        eval_every: Some(c.eval_every),
        log_every: Some(c.log_every),
        checkpoint_every: Some(c.checkpoint_every),
        dead_window: Some(c.dead_window),
        scale_tokens: Some(c.scale_tokens),
        resample_every: Some(c.resample_every),
        resample_inputs: Some(c.resample_inputs),
        skip_nonfinite: Some(c.skip_nonfinite),
        allow_incomplete: Some(c.allow_incomplete),
        include_special: Some(c.include_special),
        engine: Some(c.engine),
        device: Some(c.device.clone()),
        from: c.from.clone(),
    }
}

/// Steps, tokens, rate and the final evaluation.
fn print_summary(s: &TrainSummary) {
    let e = &s.final_eval;
    println!(
        "trained {} steps, {} tokens in {:.1}s ({:.0} tokens/s, {}) -> {}",
        s.steps,
        s.tokens,
        s.seconds,
        s.tokens as f64 / s.seconds.max(1e-9),
        s.engine,
        s.dir.display()
    );
    println!(
        "final eval ({} {} tokens): EV {:.4}  FVU {:.4}  MSE {:.4e}  L0 {:.1}  dead {:.1}%  dense {:.1}%",
        e.tokens, if e.held_out { "held-out" } else { "training" }, e.ev, e.fvu, e.mse, e.l0,
        e.dead_frac * 100.0, e.dense_frac * 100.0
    );
    if s.resampled > 0 {
        println!("resampled {} dead features during training", s.resampled);
    }
    if s.skipped_rows > 0 {
        println!(
            "dropped {} rows holding NaN/Inf (--skip-nonfinite)",
            s.skipped_rows
        );
    }
}
