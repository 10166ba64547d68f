//! Forward-pass throughput of a hooked model with random weights, for BENCHMARKS.md.
//!
//! cargo run --release --example forward_bench -- configs/models/gpt2.json 8 128 'blocks.0.hook_resid_pre,blocks.*.hook_resid_post' 5
//!
//! Prints one JSON line: tokens/s over the timed iterations (after one warm-up), and peak RSS.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use unravel::hub::HubOptions;
use unravel::models::hooks::HookSet;
use unravel::models::load;
use unravel::models::{Model, ModelOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = args
        .get(1)
        .map_or("configs/models/gpt2.json", |s| s.as_str());
    let batch: usize = args.get(2).map_or(Ok(8), |s| s.parse())?;
    let seq: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let hooks = args
        .get(4)
        .map_or("blocks.0.hook_resid_pre,blocks.*.hook_resid_post", |s| {
            s.as_str()
        });
    let iters: usize = args.get(5).map_or(Ok(5), |s| s.parse())?;
    let dtype = match args.get(6).map(|s| s.as_str()) {
        Some("f16") => DType::F16,
        Some("bf16") => DType::BF16,
        _ => DType::F32,
    };

    let files = load::resolve(config, &HubOptions::default(), false)?;
    let model = Model::load(
        &files,
        &ModelOptions {
            device: Device::Cpu,
            dtype,
            random_seed: Some(0),
        },
    )?;
    let hooks = HookSet::select(hooks, model.n_layers())?;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|i| ((i * 7919) % model.vocab_size()) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu)?;
    let mask = vec![vec![1u8; seq]; batch];

    model.forward(&ids, &mask, &hooks, false)?; // warm-up
    let mut times = vec![];
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = model.forward(&ids, &mask, &hooks, false)?;
        assert_eq!(out.hooks.len(), hooks.len());
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens = (batch * seq) as f64;
    println!(
        "{{\"impl\": \"unravel\", \"config\": \"{config}\", \"batch\": {batch}, \"seq\": {seq}, \"hooks\": {}, \"median_s\": {median:.4}, \"best_s\": {:.4}, \"tokens_per_s\": {:.1}, \"peak_rss_mb\": {:.0}}}",
        hooks.len(),
        times[0],
        tokens / median,
        peak_rss_mb()
    );
    Ok(())
}

/// Peak resident set size (VmHWM) in MiB, Linux only.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
