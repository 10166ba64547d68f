//! `unravel toy`: flags + optional configs/toy-*.toml → one batched training of Anthropic's toy
//! models of superposition → OUT/results.json, SVG plots and a summary table.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use crate::cli::progress::progress_bar;
use unravel::toy::output::{summary_text, write_outputs};
use unravel::toy::{run_experiment, Experiment, ToyFile, ToySettings};

pub const TOY_EXAMPLES: &str = "Examples:\n  \
# five features in two dimensions: the pentagon (norms 1.13, D_i 0.4, 72 degrees apart)\n  \
unravel toy --experiment pentagon\n  \
# the same from its config file, shorter, on a GPU\n  \
unravel toy --config configs/toy-pentagon.toml --steps 3000 --device cuda\n  \
# sparse vs dense, importance, interference over hidden sizes, W^T W by density, phase diagram\n  \
unravel toy --experiment sparse-vs-dense\n  \
unravel toy --experiment importance\n  \
unravel toy --experiment hidden-sizes\n  \
unravel toy --experiment wtw\n  \
unravel toy --experiment phase --out toy/phase-seed1 --seed 1\n\n\
Experiments: pentagon, sparse-vs-dense, importance, hidden-sizes, wtw, phase (Elhage et al. 2022,\n\
\"Toy Models of Superposition\"). Every instance of every configuration trains in one batched run;\n\
each configuration reports its lowest-loss instance. Writes OUT/results.json (every instance: loss,\n\
W, b, norms, D_i, dims per feature, interference, W^T W, angles in 2D), OUT/*.svg and prints a summary.";

#[derive(Args)]
pub struct ToyArgs {
    /// Experiment: pentagon, sparse-vs-dense, importance, hidden-sizes, wtw or phase.
    #[arg(long, value_name = "NAME")]
    experiment: Option<String>,
    /// TOML config (configs/toy-NAME.toml); flags override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Training steps.
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    steps: Option<usize>,
    /// Batch size (per instance).
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    batch: Option<usize>,
    /// Instances (initialisations) per configuration; the lowest-loss one is reported.
    #[arg(long, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    instances: Option<usize>,
    /// AdamW learning rate.
    #[arg(long, value_parser = crate::cli::values::positive_f64, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Seed of the initialisation and the data.
    #[arg(long, value_parser = crate::cli::values::whole::<u64>, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// cpu, cuda, cuda:N, metal or auto.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Output folder (default toy/NAME).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn cmd_toy(a: &ToyArgs) -> Result<()> {
    let file = match &a.config {
        Some(p) => ToyFile::load(p).map_err(|e| anyhow!("--config {e}"))?,
        None => ToyFile::default(),
    };
    let from_flag = a
        .experiment
        .as_deref()
        .map(|s| {
            s.parse::<Experiment>()
                .map_err(|e| anyhow!("--experiment: {e}"))
        })
        .transpose()?;
    let from_file = file.experiment().map_err(|e| anyhow!("--config: {e}"))?;
    let experiment = match (from_flag, from_file) {
        (Some(e), _) | (None, Some(e)) => e,
        (None, None) => bail!("give --experiment NAME or a --config that sets `experiment`"),
    };
    let mut s = ToySettings::defaults(experiment);
    file.apply(&mut s);
    macro_rules! flag {
        ($($k:ident),*) => {$( if let Some(v) = a.$k { s.$k = v; } )*};
    }
    flag!(steps, batch, instances, lr, seed);
    s.validate()
        .map_err(|e| anyhow!("invalid toy setting {e}"))?;
    let device_spec = a
        .device
        .clone()
        .or(file.device.clone())
        .unwrap_or("cpu".into());
    let device = unravel::device::parse_device(&device_spec)?;
    let out = a
        .out
        .clone()
        .or(file.out.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("toy").join(experiment.name()));
    let _lock = unravel::folder_lock::lock_output("--out", &out, "toy")?;

    let bar =
        progress_bar("[{elapsed_precise}] {bar:25} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}");
    bar.set_length(s.steps as u64);
    let results = run_experiment(&s, &device, &mut |step, loss| {
        bar.set_position(step as u64);
        if let Some(l) = loss {
            bar.set_message(format!("loss {l:.5}"));
        }
    });
    bar.finish_and_clear();
    let results = results?;
    let files =
        write_outputs(&results, &out).with_context(|| format!("writing {}", out.display()))?;
    print!("{}", summary_text(&results));
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(())
}
