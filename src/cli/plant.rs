//! `unravel plant`: planted features added to one hook of a copy of a dataset.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::cli::read_args;
use unravel::folder_lock::lock_output;

pub const PLANT_EXAMPLES: &str = "Examples:\n  \
# 64 directions in GPT-2's layer-6 residual stream, each on 1% of tokens, at 0.5x the mean norm\n  \
unravel plant --acts acts/gpt2-l6 --hook blocks.6.hook_resid_post --features 64 --density 0.01 \\\n      \
--magnitude 0.5 --out acts/gpt2-l6-planted\n  \
unravel train --acts acts/gpt2-l6-planted --hook blocks.6.hook_resid_post --out runs/planted\n  \
unravel verify --truth acts/gpt2-l6-planted --sae runs/planted --min-recovered 0.9\n\n\
Special-token rows are left alone; every other column and hook is copied unchanged.";

#[derive(Args)]
pub struct PlantArgs {
    /// Source activation dataset.
    #[arg(long, value_name = "DIR")]
    acts: PathBuf,
    /// Hook to plant into (default: the dataset's only hook).
    #[arg(long)]
    hook: Option<String>,
    /// Planted directions.
    #[arg(long, default_value_t = 64, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    features: usize,
    /// Probability that a planted feature is active on a token.
    #[arg(long, default_value_t = 0.01, value_parser = crate::cli::values::probability, allow_negative_numbers = true)]
    density: f64,
    /// Mean magnitude as a multiple of the hook's mean row norm (magnitudes are Exponential).
    #[arg(long, default_value_t = 0.5, value_parser = crate::cli::values::positive_f32, allow_negative_numbers = true)]
    magnitude: f32,
    #[arg(long, default_value_t = 0, value_parser = crate::cli::values::whole::<u64>, allow_negative_numbers = true)]
    seed: u64,
    /// Output dataset folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    read: read_args::ReadArgs,
}

pub fn cmd_plant(a: &PlantArgs) -> Result<()> {
    let ds = unravel::store::Dataset::open_with(&a.acts, a.read.options())?;
    let hooks = &ds.manifest().hooks;
    let hook = match (&a.hook, hooks.as_slice()) {
        (Some(h), _) => h.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => bail!(
            "--hook: {} holds {} hooks ({}); choose one",
            a.acts.display(),
            hooks.len(),
            hooks
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if !(a.density > 0.0 && a.density <= 1.0)
        || a.features == 0
        || a.magnitude.is_nan()
        || a.magnitude <= 0.0
    {
        bail!("--features must be >= 1, --density in (0, 1], --magnitude > 0");
    }
    let created = !a.out.exists();
    let _lock = lock_output("--out", &a.out, "plant")?;
    if unravel::store::manifest_path(&a.out).exists() {
        bail!(
            "--out {}: already holds a dataset; choose another folder",
            a.out.display()
        );
    }
    let spec = unravel::synth::plant::PlantSpec {
        hook: hook.clone(),
        n_features: a.features,
        density: a.density,
        relative_magnitude: a.magnitude,
        seed: a.seed,
    };
    // Damaged source shards fail here, before anything is written.
    ds.check_shards(&(0..ds.shard_count()).collect::<Vec<_>>())?;
    let t0 = std::time::Instant::now();
    let truth = unravel::synth::plant::plant(&ds, &spec, &a.out).inspect_err(|_| {
        // A failed plant cannot be resumed: leave no partial dataset behind in a folder it made.
        if created {
            let _ = std::fs::remove_dir_all(&a.out);
        }
    })?;
    println!(
        "planted {} features into {hook} ({:.2} active per token) in {:.1}s -> {}",
        truth.n_features,
        truth.frequencies.iter().sum::<f32>(),
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
