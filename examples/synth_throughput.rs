//! Is the SynthSAEBench generator fast enough to feed training (`unravel train --synth`)?
//! Measures, on all rayon threads: generation of batches of the 16k preset (samples/s), the
//! fast engine's training step on those batches (768 → 4096, batch 1024 by default), and the two
//! in sequence as `train --synth` runs them.
//!
//!     cargo build --release --example synth_throughput
//!     target/release/examples/synth_throughput [--batches 20] [--d-sae 4096] [--batch 1024]
//!
//! The dictionary is not orthogonalised here (`ortho-steps 0`): generation costs the same with
//! any directions, and the 16k orthogonalisation is a one-off cost at the start of a run.

use std::time::Instant;

use unravel::sae::config::{EngineChoice, PartialConfig, TrainConfig};
use unravel::sae::fast::FastEngine;
use unravel::sae::optim::AdamState;
use unravel::sae::{Engine, Sae};
use unravel::synth::bench::{BenchModel, BenchSpec};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect(name))
}

fn main() {
    let (batches, d_sae, batch) = (
        arg("--batches", 20),
        arg("--d-sae", 4096),
        arg("--batch", 1024),
    );
    let spec = BenchSpec {
        ortho_steps: 0,
        ..BenchSpec::default()
    };
    let t = Instant::now();
    let model = BenchModel::build(&spec, &mut |_, _| {});
    println!(
        "model built in {:.1}s (no orthogonalisation)",
        t.elapsed().as_secs_f64()
    );
    let d = spec.dims;
    // Warm-up, then generation alone.
    let _ = model.sample_x(1 << 40, batch);
    let t = Instant::now();
    let xs: Vec<Vec<f32>> = (0..batches)
        .map(|b| model.sample_x((b * batch) as u64, batch))
        .collect();
    let gen = (batches * batch) as f64 / t.elapsed().as_secs_f64();
    println!(
        "generation: {gen:.0} samples/s ({} threads)",
        rayon::current_num_threads()
    );

    let partial = PartialConfig {
        acts: Some("bench".into()),
        hook: Some("x".into()),
        d_sae: Some(d_sae),
        tokens: Some(1_000_000_000),
        batch: Some(batch),
        lr: Some(3e-4),
        l1_coefficient: Some(5.0),
        engine: Some(EngineChoice::Fast),
        ..Default::default()
    };
    let cfg = TrainConfig::resolve(partial, &[("x".into(), d)]).unwrap();
    let sae = Sae::init_april(d, d_sae, cfg.dec_init_norm, 0);
    let adam = AdamState::zeros([d_sae * d, d_sae, d_sae * d, d, 0, 0]);
    let mut engine = FastEngine::new(sae, adam, cfg.step_config());
    let scale = 0.5f32;
    let scaled: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| x.iter().map(|v| v * scale).collect())
        .collect();
    engine.step(&scaled[0], batch, 3e-4, 5.0).unwrap();
    let t = Instant::now();
    for x in &scaled {
        engine.step(x, batch, 3e-4, 5.0).unwrap();
    }
    let train = (batches * batch) as f64 / t.elapsed().as_secs_f64();
    println!("training step alone: {train:.0} samples/s ({d} → {d_sae}, batch {batch})");
    match engine.last_recomputed {
        Some(n) => println!(
            "encoder: AMX bf16 screen, {:.2}% of pre-activations recomputed in f32",
            100.0 * n as f64 / (batch * d_sae) as f64
        ),
        None => println!("encoder: f32 GEMM"),
    }

    let t = Instant::now();
    for b in 0..batches {
        let mut x = model.sample_x(((batches + b) * batch) as u64, batch);
        x.iter_mut().for_each(|v| *v *= scale);
        engine.step(&x, batch, 3e-4, 5.0).unwrap();
    }
    let both = (batches * batch) as f64 / t.elapsed().as_secs_f64();
    println!("generate + step in sequence (train --synth): {both:.0} samples/s");
    println!("generation / training = {:.2}x", gen / train);
}
