//! `unravel train` and `unravel eval`: flags → config → the library; progress bar; summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use unravel::sae::checkpoint;
use unravel::sae::config::{EngineChoice, PartialConfig, Recipe, TrainConfig};
use unravel::sae::train::{self, EvalRecord, TrainObserver};
use unravel::sae::SaeError;
use unravel::store::Dataset;

use crate::read_args::ReadArgs;

pub const TRAIN_EXAMPLES: &str = "Examples:\n  \
# GPT-2 layer 6 residual stream, 8x expansion, 50M tokens (april-2024 recipe)\n  \
unravel train --acts acts/gpt2-resid --hook blocks.6.hook_resid_post --expansion 8 --tokens 50000000 --out runs/l6\n\n  \
# the same from a config file, overriding one value\n  \
unravel train --config configs/gpt2-l6.toml --l1-coefficient 3 --out runs/l6-l1-3\n\n  \
# continue after Ctrl-C, a crash or kill -9 (bit-identical to an uninterrupted run on CPU)\n  \
unravel train --resume runs/l6\n\n  \
# Towards-Monosemanticity recipe on a GPU\n  \
unravel train --acts acts/gpt2-resid --hook blocks.6.hook_resid_post --recipe unit-norm --d-sae 16384 --device cuda --out runs/l6-un\n\n\
The run folder holds config.toml, metrics.jsonl (one JSON line per log step and evaluation), eval.json,\n\
checkpoints/ (exact resume), and the SAELens export: cfg.json, sae_weights.safetensors, sparsity.safetensors\n\
(load it with `sae_lens.SAE.load_from_disk(\"runs/l6\")`).";

/// Flags of `unravel train`; every one overrides the config file.
#[derive(Args)]
pub struct TrainArgs {
    /// Activation dataset folder (from `unravel extract`).
    #[arg(long, value_name = "DIR")]
    acts: Option<PathBuf>,
    /// Hook (column) to train on; may be left out when the dataset holds one hook.
    #[arg(long)]
    hook: Option<String>,
    /// Output run folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// TOML config (see configs/); flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (uses its saved config).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["acts", "config"])]
    resume: Option<PathBuf>,
    /// april-2024 (default) or unit-norm.
    #[arg(long)]
    recipe: Option<String>,
    /// Features, as a multiple of the hook's width (default 8).
    #[arg(long, value_parser = crate::cmd_values::positive_f64, allow_negative_numbers = true)]
    expansion: Option<f64>,
    /// Features (instead of --expansion).
    #[arg(long, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    d_sae: Option<usize>,
    /// Training tokens (default 10M).
    #[arg(long, value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    tokens: Option<u64>,
    /// Tokens per step (default 4096).
    #[arg(long, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    batch: Option<usize>,
    /// Learning rate. Default: by the run's length, 1e-3 · √(250 / steps) within [5e-5, 1e-3]
    /// (unit-norm: [1e-4, 1e-3]); at batch 4096: 1e-3 up to 1M tokens, 3.2e-4 at 10M, 1.4e-4
    /// at 50M, 5e-5 from 400M on.
    #[arg(long, value_parser = crate::cmd_values::positive_f32, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// L1 coefficient λ (default 5).
    #[arg(long, value_parser = crate::cmd_values::non_negative_f32, allow_negative_numbers = true)]
    l1_coefficient: Option<f32>,
    /// Seed of the initialisation and the shuffle.
    #[arg(long, value_parser = crate::cmd_values::whole::<u64>, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long)]
    device: Option<String>,
    /// Step implementation: auto (fast sparse on CPU, plain candle ops elsewhere), fast or plain.
    #[arg(long)]
    engine: Option<String>,
    /// Shards held out for evaluation (the last ones; default 1; 0 = evaluate on training data).
    /// More are added while they hold fewer than --eval-tokens rows and stay within a tenth of
    /// the rows; the split is printed before training.
    #[arg(long, value_parser = crate::cmd_values::whole::<usize>, allow_negative_numbers = true)]
    eval_shards: Option<usize>,
    /// Tokens per evaluation (default 200k).
    #[arg(long, value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    eval_tokens: Option<u64>,
    /// Evaluate every N training tokens (default: only at the end).
    #[arg(long, value_name = "N", value_parser = crate::cmd_values::whole::<u64>, allow_negative_numbers = true)]
    eval_every: Option<u64>,
    /// Append a metrics.jsonl line every N steps (default 10).
    #[arg(long, value_name = "N", value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    log_every: Option<u64>,
    /// Checkpoint every N tokens (default 5M).
    #[arg(long, value_name = "N", value_parser = crate::cmd_values::whole::<u64>, allow_negative_numbers = true)]
    checkpoint_every: Option<u64>,
    /// A feature is dead when it did not fire in this many tokens (default min(10M, --tokens)).
    #[arg(long, value_name = "N", value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    dead_window: Option<u64>,
    /// Shuffle window in tokens (default 65536).
    #[arg(long, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    shuffle_buffer: Option<usize>,
    #[command(flatten)]
    read: ReadArgs,
    /// Start from this SAELens-layout SAE: a folder, or OWNER/REPO[/SUBFOLDER] on the hub.
    #[arg(long, value_name = "DIR_OR_HUB")]
    from: Option<String>,
}

impl TrainArgs {
    fn partial(&self) -> Result<PartialConfig> {
        Ok(PartialConfig {
            acts: self.acts.clone(),
            hook: self.hook.clone(),
            recipe: self
                .recipe
                .as_deref()
                .map(Recipe::parse)
                .transpose()
                .context("--recipe")?,
            d_sae: self.d_sae,
            expansion: self.expansion,
            tokens: self.tokens,
            batch: self.batch,
            lr: self.lr,
            l1_coefficient: self.l1_coefficient,
            seed: self.seed,
            device: self.device.clone(),
            engine: self.engine.as_deref().map(parse_engine).transpose()?,
            eval_shards: self.eval_shards,
            eval_tokens: self.eval_tokens,
            eval_every: self.eval_every,
            log_every: self.log_every,
            checkpoint_every: self.checkpoint_every,
            dead_window: self.dead_window,
            shuffle_buffer: self.shuffle_buffer,
            skip_nonfinite: self.read.skip_nonfinite.then_some(true),
            allow_incomplete: self.read.allow_incomplete.then_some(true),
            from: self.from.clone(),
            ..Default::default()
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

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress_bar(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::hidden();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
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
            p.acts = Some(saved.acts.clone());
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
            let Some(acts) = p.acts.clone() else {
                bail!("--acts DIR is required (an activation dataset from `unravel extract`)")
            };
            let cfg = TrainConfig::resolve(p, &hooks_of(&acts, &a.read)?)?;
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
    let result = train::train(&cfg, &dir, resume, &mut obs, &interrupt);
    bar.finish_and_clear();
    match result {
        Ok(s) => {
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
            Ok(())
        }
        Err(SaeError::Interrupted) => {
            eprintln!(
                "interrupted: checkpoint saved; continue with `unravel train --resume {}`",
                dir.display()
            );
            std::process::exit(130);
        }
        Err(e) => Err(e.into()),
    }
}

/// A saved config as a partial one (every field set), so flags can be laid over it.
fn partial_from(c: &TrainConfig) -> PartialConfig {
    PartialConfig {
        acts: Some(c.acts.clone()),
        hook: Some(c.hook.clone()),
        recipe: Some(c.recipe),
        d_sae: Some(c.d_sae),
        expansion: None,
        tokens: Some(c.tokens),
        batch: Some(c.batch),
        lr: Some(c.lr),
        l1_coefficient: Some(c.l1_coefficient),
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

pub const EVAL_EXAMPLES: &str = "Examples:\n  \
# the held-out shards of the run's own dataset\n  \
unravel eval --sae runs/l6 --acts acts/gpt2-resid\n\n  \
# any SAELens-layout folder on any dataset holding its hook, all shards, 1M tokens\n  \
unravel eval --sae ./some-saelens-sae --acts acts/gpt2-resid --shards all --eval-tokens 1000000\n\n  \
# also splice the SAE into GPT-2: CE loss clean / with SAE / zero-ablated, CE recovered, KL score\n  \
unravel eval --sae runs/l6 --acts acts/gpt2-resid --model gpt2 --contexts 256\n\n\
Prints EV/FVU (FVU = Σ‖x−x̂‖² / Σ‖x−x̄‖², x̄ over the whole evaluated set), MSE, L0, dead and dense\n\
fractions and the log10 density histogram, and writes them as JSON (--json, default SAE_DIR/eval-report.json).";

#[derive(Args)]
pub struct EvalArgs {
    /// SAE in SAELens layout: a folder (a run of `unravel train`, or any SAELens SAE), or
    /// OWNER/REPO[/SUBFOLDER] on the Hugging Face hub (standard cache; HF_HUB_OFFLINE=1 = cache only).
    #[arg(long, value_name = "DIR_OR_HUB")]
    sae: String,
    /// Activation dataset folder.
    #[arg(long, value_name = "DIR")]
    acts: PathBuf,
    /// Hook (column); default: the SAE's hook_name, or the dataset's only hook.
    #[arg(long)]
    hook: Option<String>,
    /// Which shards: heldout (the run's held-out shards when --acts is its dataset, else all) or all.
    #[arg(long, default_value = "heldout")]
    shards: String,
    /// Tokens to evaluate.
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::cmd_values::at_least_1::<u64>, allow_negative_numbers = true)]
    eval_tokens: u64,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Where to write the JSON report.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// GPT-2 model (local folder or hub repo id) to splice the SAE into: CE loss clean / with SAE /
    /// zero-ablated, CE loss recovered, KL score. Use the model the shards were extracted with.
    #[arg(long, value_name = "DIR_OR_REPO")]
    model: Option<String>,
    /// Hub revision of --model and of a hub --sae.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Contexts for the CE/KL evaluation.
    #[arg(long, default_value_t = 64, value_parser = crate::cmd_values::at_least_1::<usize>, allow_negative_numbers = true)]
    contexts: usize,
    #[command(flatten)]
    read: ReadArgs,
}

pub fn cmd_eval(a: &EvalArgs) -> Result<()> {
    let hub = unravel::hub::HubOptions {
        revision: a.revision.clone(),
        ..Default::default()
    };
    let sae_dir = checkpoint::locate_saelens(&a.sae, &hub)?;
    let _lock = match &a.json {
        Some(f) => unravel::folder_lock::lock_output_file("--json", f, "eval")?,
        None => unravel::folder_lock::lock_output("--sae", &sae_dir, "eval")?,
    };
    let loaded = checkpoint::load_saelens(&sae_dir)?;
    let ds = Dataset::open_with(&a.acts, a.read.options())?;
    let hooks: Vec<(String, usize)> = ds
        .manifest()
        .hooks
        .iter()
        .map(|h| (h.name.clone(), h.d))
        .collect();
    let hook = a.hook.clone().or_else(|| {
        loaded
            .hook_name
            .clone()
            .filter(|h| hooks.iter().any(|(n, _)| n == h))
    });
    let partial = PartialConfig {
        acts: Some(a.acts.clone()),
        hook,
        d_sae: Some(loaded.sae.d_sae),
        tokens: Some(4096),
        device: Some(a.device.clone()),
        skip_nonfinite: Some(a.read.skip_nonfinite),
        allow_incomplete: Some(a.read.allow_incomplete),
        ..Default::default()
    };
    let cfg = TrainConfig::resolve(partial, &hooks)?;
    if cfg.d_in != loaded.sae.d_in {
        bail!(
            "--sae {}: the SAE reads d_in = {}, but hook {} in {} has d = {}",
            a.sae,
            loaded.sae.d_in,
            cfg.hook,
            a.acts.display(),
            cfg.d_in
        );
    }
    // The run's held-out shards, when this is the run's dataset.
    let own_run = checkpoint::RunInfo::load(&sae_dir).ok().filter(|info| {
        use sha2::Digest;
        std::fs::read(a.acts.join(unravel::store::MANIFEST_FILE))
            .map(|b| hex::encode(sha2::Sha256::digest(&b)) == info.manifest_sha256)
            .unwrap_or(false)
    });
    let (shards, held_out) = match (a.shards.as_str(), &own_run) {
        ("heldout", Some(info)) if !info.eval_shards.is_empty() => (info.eval_shards.clone(), true),
        ("heldout", _) | ("all", _) => ((0..ds.shard_count()).collect(), false),
        (o, _) => bail!("--shards {o}: expected heldout or all"),
    };
    let adam = unravel::sae::optim::AdamState::zeros([0; 4]);
    let mut engine = train::make_engine(&cfg, &loaded.sae, &adam)?;
    let t0 = std::time::Instant::now();
    let bar = progress_bar(
        "[{elapsed_precise}] {bar:30} {human_pos}/{human_len} tokens  {per_sec}  ETA {eta}",
    );
    bar.set_length(train::evaluation_rows(&ds, &cfg, &shards, a.eval_tokens));
    let evaluated = train::evaluate_observed(
        engine.as_mut(),
        &ds,
        &cfg,
        &shards,
        1.0,
        a.eval_tokens,
        &mut |n| bar.set_position(n),
    );
    bar.finish_and_clear();
    let (acc, totals) = evaluated?;
    let rec = totals.record(&acc, 0, 0, held_out);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "SAE {} on {} ({}, {} tokens, {} shards, {:.1}s)",
        a.sae,
        a.acts.display(),
        cfg.hook,
        rec.tokens,
        shards.len(),
        secs
    );
    if ds.nonfinite_rows_dropped() > 0 {
        println!(
            "  dropped {} rows holding NaN/Inf (--skip-nonfinite)",
            ds.nonfinite_rows_dropped()
        );
    }
    println!("  {:<12} {:>12}", "metric", "value");
    for (k, v) in [
        ("EV", format!("{:.5}", rec.ev)),
        ("FVU", format!("{:.5}", rec.fvu)),
        ("MSE", format!("{:.5e}", rec.mse)),
        ("L0", format!("{:.2}", rec.l0)),
        ("dead", format!("{:.2}%", rec.dead_frac * 100.0)),
        ("dense", format!("{:.2}%", rec.dense_frac * 100.0)),
    ] {
        println!("  {k:<12} {v:>12}");
    }
    println!("  log10 density histogram (bin: features):");
    let bins: Vec<String> = rec
        .log_density_histogram
        .iter()
        .filter(|b| b.1 > 0)
        .map(|(lo, n)| format!("[{lo:.1}, {:.1}): {n}", lo + 0.5))
        .collect();
    println!("    {}", bins.join("  "));
    let downstream = match &a.model {
        Some(spec) => {
            let hub = unravel::hub::HubOptions {
                revision: a.revision.clone(),
                ..Default::default()
            };
            let files = unravel::models::load::resolve(spec, &hub, true)?;
            let opts = unravel::models::ModelOptions {
                device: unravel::device::parse_device(&a.device)?,
                ..Default::default()
            };
            let model = unravel::models::Model::load(&files, &opts)?;
            let point = unravel::models::hooks::HookPoint::all(model.n_layers())
                .into_iter()
                .find(|p| p.name() == cfg.hook)
                .ok_or_else(|| anyhow::anyhow!("--model {spec}: has no hook {}", cfg.hook))?;
            let t0 = std::time::Instant::now();
            let r = unravel::sae::downstream::downstream(
                &model,
                &ds,
                &shards,
                point,
                &loaded.sae,
                a.contexts,
                8,
            )?;
            println!(
                "  spliced into {spec} at {} ({} contexts, {} positions, {:.1}s):",
                cfg.hook,
                r.contexts,
                r.tokens,
                t0.elapsed().as_secs_f64()
            );
            for (k, v) in [
                ("CE clean", r.ce_clean),
                ("CE with SAE", r.ce_sae),
                ("CE zero-abl.", r.ce_zero),
            ] {
                println!("  {k:<12} {v:>12.5}");
            }
            match r.ce_recovered {
                Some(v) => println!("  {:<12} {v:>12.5}", "CE recovered"),
                None => println!(
                    "  CE recovered: undefined (zero-ablation does not raise the loss: CE_zero {:.5} <= CE_clean {:.5})",
                    r.ce_zero, r.ce_clean
                ),
            }
            for (k, v) in [
                ("KL with SAE", r.kl_sae),
                ("KL zero-abl.", r.kl_zero),
                ("KL score", r.kl_score),
            ] {
                println!("  {k:<12} {v:>12.5}");
            }
            Some(r)
        }
        None => None,
    };
    let out = a
        .json
        .clone()
        .unwrap_or_else(|| sae_dir.join("eval-report.json"));
    let mut value = serde_json::to_value(&rec)?;
    if let (Some(o), Some(r)) = (value.as_object_mut(), &downstream) {
        o.insert("downstream".into(), serde_json::to_value(r)?);
    }
    if let Some(o) = value.as_object_mut() {
        o.insert("sae".into(), a.sae.clone().into());
        o.insert("acts".into(), a.acts.display().to_string().into());
        o.insert("hook".into(), cfg.hook.clone().into());
        o.remove("step");
        o.remove("tokens_trained");
    }
    unravel::io::write_atomic(&out, serde_json::to_string_pretty(&value)?.as_bytes())
        .with_context(|| format!("--json {}", out.display()))?;
    println!("-> {}", out.display());
    Ok(())
}

pub const VERIFY_EXAMPLES: &str = "Examples:\n  \
unravel synth --features 512 --dims 256 --density 0.1 --tokens 1000000 --seed 7 --out synth/seed000\n  \
unravel train --acts synth/seed000 --d-sae 1024 --tokens 1000000 --out runs/seed000\n  \
unravel verify --truth synth/seed000 --sae runs/seed000 --min-mmcs 0.98\n\n  \
# planted polysemantic neurons: precision / recall of the audit\n  \
unravel synth --neurons 256 --tokens 200000 --out synth/neurons\n  \
unravel audit --acts synth/neurons --out audits/planted\n  \
unravel verify --truth synth/neurons --audit audits/planted --min-precision 0.95 --min-recall 0.95\n\n\
MMCS = mean over planted directions of the best cosine with any decoder row; MCC = mean |cos| under the\n\
optimal one-to-one matching (Hungarian); recovered = fraction with best cosine >= --threshold.\n\
With --min-mmcs / --min-mcc / --min-recovered / --max-dead it prints a PASS/FAIL table and exits 1 on
any failure (for scripts and CI).";

#[derive(Args)]
pub struct VerifyArgs {
    /// Planted dataset folder from `unravel synth` (or its truth/ folder).
    #[arg(long, value_name = "DIR")]
    truth: PathBuf,
    /// The SAE: a run folder or any SAELens-layout folder (or OWNER/REPO[/SUBFOLDER] on the hub).
    #[arg(
        long,
        value_name = "DIR_OR_HUB",
        required_unless_present = "audit",
        conflicts_with = "audit"
    )]
    sae: Option<String>,
    /// An audit folder (`unravel audit --acts TRUTH_DIR`) to score against planted neurons
    /// (`unravel synth --neurons`): precision, recall, F1 of the polysemantic ones and their concepts.
    #[arg(long, value_name = "DIR")]
    audit: Option<PathBuf>,
    /// With --audit: fail when the precision at finding polysemantic neurons is below this.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    min_precision: Option<f64>,
    /// With --audit: fail when the recall at finding polysemantic neurons is below this.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    min_recall: Option<f64>,
    /// With --audit: fail when the F1 of the (neuron, concept) pairs found is below this.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    min_concept_f1: Option<f64>,
    /// Cosine at which a planted feature counts as recovered (and two latents as duplicates).
    #[arg(long, default_value_t = 0.9, value_parser = crate::cmd_values::probability_f32, allow_negative_numbers = true)]
    threshold: f32,
    /// Fail (exit 1) when MMCS is below this.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    min_mmcs: Option<f64>,
    /// Fail when MCC (one-to-one matching) is below this.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    min_mcc: Option<f64>,
    /// Fail when the recovered fraction (0–1) is below this.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    min_recovered: Option<f64>,
    /// Fail when more than this fraction (0–1) of latents is dead.
    #[arg(long, value_parser = crate::cmd_values::fraction, allow_negative_numbers = true)]
    max_dead: Option<f64>,
    /// Where to write the JSON report (default SAE_DIR/verify.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Prints the pass/fail table; an error (exit 1) when a check fails.
fn check_table(checks: &[(&str, f64, String, bool)]) -> Result<()> {
    if checks.is_empty() {
        return Ok(());
    }
    println!(
        "  {:<14} {:>8}  {:<10} result",
        "check", "value", "threshold"
    );
    for (name, v, t, pass) in checks {
        println!(
            "  {name:<14} {v:>8.4}  {t:<10} {}",
            if *pass { "PASS" } else { "FAIL" }
        );
    }
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.3)
        .map(|(n, v, t, _)| format!("{n} {v:.4} (wanted {t})"))
        .collect();
    if !failed.is_empty() {
        bail!("verify failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `verify --audit`: the audit of planted neurons against their truth.
fn verify_audit(a: &VerifyArgs, audit_dir: &std::path::Path) -> Result<()> {
    use unravel::synth::neurons::{score_neurons, NeuronTruth};
    let truth = NeuronTruth::load(&a.truth).map_err(|e| {
        anyhow::anyhow!("--truth {e} (planted neurons come from `unravel synth --neurons`)")
    })?;
    let _lock = unravel::folder_lock::lock_output("--audit", audit_dir, "verify")?;
    let path = audit_dir.join("audit.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--audit {}: run `unravel audit` first", path.display()))?;
    let report: unravel::analysis::report::AuditReport = serde_json::from_str(&text)
        .with_context(|| format!("--audit {}: not an audit.json", path.display()))?;
    let side = report
        .sides
        .iter()
        .find(|s| s.kind == "neurons")
        .ok_or_else(|| anyhow::anyhow!("--audit {}: audits no neurons", path.display()))?;
    let found: Vec<(String, Vec<String>)> = side
        .unit_results
        .iter()
        .map(|u| {
            (
                u.class.clone(),
                u.concepts.iter().map(|c| c.concept.clone()).collect(),
            )
        })
        .collect();
    let s = score_neurons(&truth, &found).map_err(|e| anyhow::anyhow!("--audit {e}"))?;
    println!(
        "{} planted neurons ({} polysemantic) vs the audit in {} ({} >= {}):",
        truth.neurons.len(),
        s.polysemantic.actual,
        audit_dir.display(),
        report.score,
        report.threshold
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>9}",
        "", "precision", "recall", "F1"
    );
    for (name, p) in [
        ("polysemantic neurons", &s.polysemantic),
        ("(neuron, concept)", &s.concepts),
    ] {
        println!(
            "  {name:<22} {:>9.4} {:>9.4} {:>9.4}   ({} found, {} true, {} right)",
            p.precision, p.recall, p.f1, p.predicted, p.actual, p.true_positives
        );
    }
    println!(
        "  class accuracy (a distractor's class is unexplained) {:.4}",
        s.class_accuracy
    );
    if s.distractors > 0 {
        println!(
            "  distractors called polysemantic: {} of {} ({} of their outlier concepts passed)",
            s.distractors_flagged, s.distractors, s.distractor_concepts_passed
        );
    }
    let out = a
        .json
        .clone()
        .unwrap_or_else(|| audit_dir.join("verify.json"));
    unravel::io::write_atomic(&out, serde_json::to_string_pretty(&s)?.as_bytes())
        .with_context(|| format!("--json {}", out.display()))?;
    println!("-> {}", out.display());
    let checks: Vec<(&str, f64, String, bool)> = [
        a.min_precision.map(|t| {
            (
                "precision",
                s.polysemantic.precision,
                format!(">= {t}"),
                s.polysemantic.precision >= t,
            )
        }),
        a.min_recall.map(|t| {
            (
                "recall",
                s.polysemantic.recall,
                format!(">= {t}"),
                s.polysemantic.recall >= t,
            )
        }),
        a.min_concept_f1.map(|t| {
            (
                "concept F1",
                s.concepts.f1,
                format!(">= {t}"),
                s.concepts.f1 >= t,
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    check_table(&checks)
}

pub fn cmd_verify(a: &VerifyArgs) -> Result<()> {
    let sae = match (&a.audit, &a.sae) {
        (Some(dir), _) => return verify_audit(a, dir),
        (None, Some(s)) => s.as_str(),
        (None, None) => bail!("give --sae (planted features) or --audit (planted neurons)"),
    };
    let (truth, freqs, d) =
        unravel::synth::verify::read_truth(&a.truth).map_err(|e| anyhow::anyhow!("--truth {e}"))?;
    let dir = checkpoint::locate_saelens(sae, &unravel::hub::HubOptions::default())?;
    let _lock = unravel::folder_lock::lock_output("--sae", &dir, "verify")?;
    let loaded = checkpoint::load_saelens(&dir)?;
    if loaded.sae.d_in != d {
        bail!(
            "--sae {}: the SAE reads d_in = {}, the planted directions have d = {d}",
            sae,
            loaded.sae.d_in
        );
    }
    // Dead latents from the export's sparsity file (log10 density; −10 = never fired), if any.
    let alive: Vec<bool> =
        candle_core::safetensors::load(dir.join("sparsity.safetensors"), &candle_core::Device::Cpu)
            .ok()
            .and_then(|t| t.get("sparsity").and_then(|s| s.to_vec1::<f32>().ok()))
            .map(|s| s.iter().map(|&l| l > -9.99).collect())
            .unwrap_or_else(|| vec![true; loaded.sae.d_sae]);
    let r =
        unravel::synth::verify::recovery(&truth, &freqs, &loaded.sae.w_dec, &alive, d, a.threshold);
    println!(
        "{} planted features vs {} latents ({} dims):",
        r.n_truth, r.d_sae, r.d
    );
    println!("  MMCS       {:.4}", r.mmcs);
    println!("  MCC        {:.4}  (Hungarian one-to-one)", r.mcc);
    println!(
        "  recovered  {:.1}%  (best cos >= {})",
        r.recovered * 100.0,
        r.threshold
    );
    println!(
        "  dead latents {}, duplicated latent pairs {}",
        r.dead_latents, r.duplicated_pairs
    );
    println!("  by planted frequency:");
    println!(
        "    {:>21}  {:>8}  {:>13}  {:>9}",
        "frequency", "features", "mean best cos", "recovered"
    );
    for b in &r.bands {
        println!(
            "    {:>9.5} – {:<9.5}  {:>8}  {:>13.4}  {:>8.1}%",
            b.min_frequency,
            b.max_frequency,
            b.features,
            b.mean_best_cos,
            b.recovered * 100.0
        );
    }
    let plot = dir.join("verify.svg");
    let points: Vec<(f32, f32)> = r
        .features
        .iter()
        .map(|f| (f.frequency, f.best_cos))
        .collect();
    unravel::report::plots::recovery_scatter(
        &plot,
        &points,
        r.threshold,
        "planted features: best cosine vs frequency",
    )
    .map_err(|e| anyhow::anyhow!("cannot write the plot: {e}"))?;
    println!("  plot: {}", plot.display());
    let out = a.json.clone().unwrap_or_else(|| dir.join("verify.json"));
    unravel::io::write_atomic(&out, serde_json::to_string_pretty(&r)?.as_bytes())
        .with_context(|| format!("--json {}", out.display()))?;
    println!("-> {}", out.display());
    // The pass/fail table against the thresholds given.
    let dead_frac = r.dead_latents as f64 / r.d_sae.max(1) as f64;
    let checks: Vec<(&str, f64, String, bool)> = [
        a.min_mmcs
            .map(|t| ("MMCS", r.mmcs, format!(">= {t}"), r.mmcs >= t)),
        a.min_mcc
            .map(|t| ("MCC", r.mcc, format!(">= {t}"), r.mcc >= t)),
        a.min_recovered.map(|t| {
            (
                "recovered",
                r.recovered,
                format!(">= {t}"),
                r.recovered >= t,
            )
        }),
        a.max_dead
            .map(|t| ("dead latents", dead_frac, format!("<= {t}"), dead_frac <= t)),
    ]
    .into_iter()
    .flatten()
    .collect();
    check_table(&checks)
}
