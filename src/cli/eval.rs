//! `unravel eval`: an SAE evaluated on activation shards; optional CE/KL splice into GPT-2.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;

use unravel::sae::checkpoint;
use unravel::sae::downstream::DownstreamReport;
use unravel::sae::eval_report::{EvalReport, EVAL_REPORT_FILE};
use unravel::sae::evaluate::{self, EvalError, EvalOptions, EvalPlan, ShardChoice};
use unravel::store::Dataset;

use crate::cli::output;
use crate::cli::progress::progress_bar;
use crate::cli::read_args::ReadArgs;

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
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::cli::values::at_least_1::<u64>, allow_negative_numbers = true)]
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
    #[arg(long, default_value_t = 64, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
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
    let opts = EvalOptions {
        hook: a.hook.clone(),
        device: a.device.clone(),
        read: a.read.options(),
    };
    let cfg = evaluate::resolve(&a.sae, &loaded, &a.acts, &ds, &opts).map_err(|e| match e {
        EvalError::Width { .. } => anyhow!("--sae {e}"),
        e => e.into(),
    })?;
    let choice: ShardChoice = a.shards.parse().map_err(|e| anyhow!("--shards {e}"))?;
    let plan = EvalPlan::new(cfg, choice, &sae_dir, &a.acts, &ds);
    let (cfg, shards) = (&plan.cfg, &plan.shards);
    let t0 = std::time::Instant::now();
    let bar = progress_bar(
        "[{elapsed_precise}] {bar:30} {human_pos}/{human_len} tokens  {per_sec}  ETA {eta}",
    );
    bar.set_length(evaluate::rows(&ds, &plan, a.eval_tokens));
    let evaluated = evaluate::run(&ds, &plan, &loaded, a.eval_tokens, &mut |n| {
        bar.set_position(n)
    });
    bar.finish_and_clear();
    let rec = evaluated?;
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
            let t0 = std::time::Instant::now();
            let r = splice(a, spec, &ds, &plan, &loaded)?;
            print_downstream(spec, &cfg.hook, &r, t0.elapsed().as_secs_f64());
            Some(r)
        }
        None => None,
    };
    let out = a
        .json
        .clone()
        .unwrap_or_else(|| sae_dir.join(EVAL_REPORT_FILE));
    let report = EvalReport::new(
        &rec,
        &a.sae,
        &a.acts.display().to_string(),
        &cfg.hook,
        downstream,
    );
    output::write(&out, report.to_json().as_bytes(), || {
        format!("--json {}", out.display())
    })?;
    println!("-> {}", out.display());
    Ok(())
}

/// `--model`: CE and KL with the SAE spliced into the model at its hook.
fn splice(
    a: &EvalArgs,
    spec: &str,
    ds: &Dataset,
    plan: &EvalPlan,
    loaded: &checkpoint::LoadedSae,
) -> Result<DownstreamReport> {
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
    let hook = &plan.cfg.hook;
    let point = unravel::models::hooks::HookPoint::all(model.n_layers())
        .into_iter()
        .find(|p| p.name() == *hook)
        .ok_or_else(|| anyhow!("--model {spec}: has no hook {hook}"))?;
    Ok(unravel::sae::downstream::downstream(
        &model,
        ds,
        &plan.shards,
        point,
        &loaded.sae,
        a.contexts,
        8,
    )?)
}

fn print_downstream(spec: &str, hook: &str, r: &DownstreamReport, secs: f64) {
    println!(
        "  spliced into {spec} at {hook} ({} contexts, {} positions, {secs:.1}s):",
        r.contexts, r.tokens
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
}
