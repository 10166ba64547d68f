//! Our side of `scripts/bench_sae.py`: generates planted-feature data, an april-2024 init and a
//! config into `--work DIR` (deterministic), then (unless `--generate-only`) trains with the
//! library's engine on the batches in order and writes `unravel.json` with tokens/s and the
//! per-step loss curve.
//!
//! ```sh
//! cargo build --release --example sae_bench
//! target/release/examples/sae_bench --work /tmp/sae-bench --d-in 768 --d-sae 6144 --batch 4096 --steps 100
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, StandardNormal};
use unravel::sae::config::{EngineChoice, PartialConfig, TrainConfig};
use unravel::sae::fast::FastEngine;
use unravel::sae::optim::AdamState;
use unravel::sae::plain::PlainEngine;
use unravel::sae::{Engine, Sae};

struct Args {
    work: PathBuf,
    d_in: usize,
    d_sae: usize,
    batch: usize,
    steps: u64,
    generate_only: bool,
    engine: String,
    lr: f32,
    l1: f32,
    /// Time the dense and sparse paths at these L0s instead of training.
    profile: Vec<f64>,
    /// Train this many steps (batch 1024) before writing the init, so the benchmark measures
    /// steady-state training (realistic L0) rather than the first, dense steps.
    pretrain_steps: u64,
}

fn parse() -> Args {
    let mut a = Args {
        work: PathBuf::from("/tmp/sae-bench"),
        d_in: 768,
        d_sae: 6144,
        batch: 4096,
        steps: 100,
        generate_only: false,
        engine: "fast".into(),
        lr: 4e-4,
        l1: 5.0,
        profile: vec![],
        pretrain_steps: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--work" => a.work = v.into(),
            "--d-in" => a.d_in = v.parse().expect("--d-in"),
            "--d-sae" => a.d_sae = v.parse().expect("--d-sae"),
            "--batch" => a.batch = v.parse().expect("--batch"),
            "--steps" => a.steps = v.parse().expect("--steps"),
            "--engine" => a.engine = v,
            "--pretrain-steps" => a.pretrain_steps = v.parse().expect("--pretrain-steps"),
            "--lr" => a.lr = v.parse().expect("--lr"),
            "--l1" => a.l1 = v.parse().expect("--l1"),
            "--profile-l0" => {
                a.profile = v
                    .split(',')
                    .map(|x| x.parse().expect("--profile-l0"))
                    .collect()
            }
            "--generate-only" => {
                a.generate_only = true;
                i += 1;
                continue;
            }
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

/// Planted features: 4·d_in unit directions, ~32 active per token, Exponential(1) magnitudes.
fn generate(d: usize, rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = 4 * d;
    let mut dirs: Vec<f32> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
    for r in dirs.chunks_mut(d) {
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        r.iter_mut().for_each(|v| *v /= norm);
    }
    let p = 32.0 / n as f64;
    let mut x = vec![0f32; rows * d];
    for out in x.chunks_mut(d) {
        // Geometric skipping: the gap to the next active feature.
        let mut i = 0usize;
        loop {
            let u: f64 = rng.random::<f64>().max(1e-300);
            i += (u.ln() / (1.0 - p).ln()).floor() as usize;
            if i >= n {
                break;
            }
            let a: f32 = rng.sample(Exp1);
            for (o, &w) in out.iter_mut().zip(&dirs[i * d..(i + 1) * d]) {
                *o += a * w;
            }
            i += 1;
        }
    }
    x
}

fn save(path: &Path, tensors: Vec<(&str, Tensor)>) {
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (*k, v)), None).unwrap();
    unravel::io::write_atomic(path, &bytes).unwrap();
}

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let a = parse();
    std::fs::create_dir_all(&a.work).unwrap();
    let (d, s) = (a.d_in, a.d_sae);
    let n_batches = (a.steps as usize).clamp(1, 16);
    let rows = n_batches * a.batch;
    let partial = partial_for(&a);
    let cfg = TrainConfig::resolve(partial, &[("x".into(), d)]).unwrap();
    let warm = ((cfg.l1_warmup_frac * cfg.total_steps() as f64).round() as u64).max(1);
    let decay = (cfg.lr_decay_frac * cfg.total_steps() as f64).round() as u64;

    let x = generate(d, rows, 7);
    let mean_norm = x
        .chunks(d)
        .map(|r| r.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt())
        .sum::<f64>()
        / rows as f64;
    let scale = ((d as f64).sqrt() / mean_norm) as f32;
    let mut sae = Sae::init_april(d, s, cfg.dec_init_norm, 0);
    let cpu = Device::Cpu;
    let init_file = a.work.join("init.safetensors");
    if a.pretrain_steps > 0 && !a.generate_only {
        // Start from the pretrained weights written by --generate-only.
        let t = candle_core::safetensors::load(&init_file, &cpu).unwrap();
        let v = |k: &str| t[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w_enc_t = v("W_enc");
        for i in 0..s {
            for j in 0..d {
                sae.w_enc[i * d + j] = w_enc_t[j * s + i];
            }
        }
        sae.b_enc = v("b_enc");
        sae.w_dec = v("W_dec");
        sae.b_dec = v("b_dec");
    }
    if a.pretrain_steps > 0 && a.generate_only {
        let pb = 1024;
        let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
        let pre = TrainConfig::resolve(
            PartialConfig {
                tokens: Some(a.pretrain_steps * pb as u64),
                batch: Some(pb),
                lr_decay_frac: Some(0.0),
                ..partial_for(&a)
            },
            &[("x".into(), d)],
        )
        .unwrap();
        let mut e = FastEngine::new(
            sae.clone(),
            AdamState::zeros([s * d, s, s * d, d, 0, 0]),
            pre.step_config(),
        );
        let mut l0 = 0.0;
        for t in 0..a.pretrain_steps {
            let b = (t as usize) % (rows / pb);
            l0 = e
                .step(
                    &xs[b * pb * d..(b + 1) * pb * d],
                    pb,
                    pre.lr_at(t),
                    pre.l1_at(t),
                )
                .unwrap()
                .l0();
        }
        sae = e.snapshot().unwrap().0;
        println!(
            "pretrained {} steps of {pb} tokens: L0 {l0:.1}",
            a.pretrain_steps
        );
    }
    if a.generate_only {
        save(
            &a.work.join("data.safetensors"),
            vec![("x", Tensor::from_slice(&x, (rows, d), &cpu).unwrap())],
        );
        let mut w_enc_t = vec![0f32; d * s];
        for i in 0..s {
            for j in 0..d {
                w_enc_t[j * s + i] = sae.w_enc[i * d + j];
            }
        }
        save(
            &init_file,
            vec![
                ("W_enc", Tensor::from_slice(&w_enc_t, (d, s), &cpu).unwrap()),
                ("b_enc", Tensor::from_slice(&sae.b_enc, s, &cpu).unwrap()),
                (
                    "W_dec",
                    Tensor::from_slice(&sae.w_dec, (s, d), &cpu).unwrap(),
                ),
                ("b_dec", Tensor::from_slice(&sae.b_dec, d, &cpu).unwrap()),
                ("scale", Tensor::from_slice(&[scale], 1, &cpu).unwrap()),
            ],
        );
        let config = serde_json::json!({
            "d_in": d, "d_sae": s, "batch": a.batch, "steps": a.steps, "lr": cfg.lr,
            "l1_coefficient": cfg.l1_coefficient, "l1_warmup_steps": warm, "lr_decay_steps": decay,
            "clip_norm": cfg.clip_norm.unwrap_or(0.0), "beta1": cfg.beta1, "beta2": cfg.beta2, "eps": cfg.adam_eps,
        });
        unravel::io::write_atomic(
            &a.work.join("config.json"),
            serde_json::to_string_pretty(&config).unwrap().as_bytes(),
        )
        .unwrap();
        println!(
            "generated {rows} rows x {d} (scale {scale}) -> {}",
            a.work.display()
        );
        return;
    }
    let adam = AdamState::zeros([s * d, s, s * d, d, 0, 0]);
    if !a.profile.is_empty() {
        profile(&a, &x, scale, sae, adam, &cfg);
        return;
    }
    let mut engine: Box<dyn Engine> = match a.engine.as_str() {
        "plain" => Box::new(
            PlainEngine::new(
                &sae,
                &adam,
                cfg.step_config(),
                &cpu,
                candle_core::DType::F32,
            )
            .unwrap(),
        ),
        _ => Box::new(FastEngine::new(sae, adam, cfg.step_config())),
    };
    let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
    let mut steps = vec![];
    let t0 = Instant::now();
    for t in 0..a.steps {
        let b = (t as usize) % n_batches;
        let batch = &xs[b * a.batch * d..(b + 1) * a.batch * d];
        let (lr, lam) = (cfg.lr_at(t), cfg.l1_at(t));
        let st = engine.step(batch, a.batch, lr, lam).unwrap();
        steps.push(serde_json::json!({
            "step": t, "mse": st.mse(), "l1": st.l1(), "loss": st.mse() + lam as f64 * st.l1(), "l0": st.l0(),
        }));
    }
    let secs = t0.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "tokens_per_s": (a.steps as f64 * a.batch as f64) / secs,
        "seconds": secs,
        "engine": engine.name(),
        "peak_rss_mb": peak_rss_mb(),
        "steps": steps,
    });
    unravel::io::write_atomic(
        &a.work.join("unravel.json"),
        serde_json::to_string(&out).unwrap().as_bytes(),
    )
    .unwrap();
    println!(
        "{} steps in {secs:.2}s: {:.0} tokens/s ({})",
        a.steps,
        a.steps as f64 * a.batch as f64 / secs,
        engine.name()
    );
}

/// Per-step time of the dense and sparse paths at target L0s (b_enc shifted to reach them).
fn profile(a: &Args, x: &[f32], scale: f32, sae: Sae, adam: AdamState, cfg: &TrainConfig) {
    let d = a.d_in;
    let xs: Vec<f32> = x[..a.batch * d].iter().map(|v| v * scale).collect();
    for &target in &a.profile {
        // Bisect a common encoder bias that gives the target L0 on this batch.
        let (mut lo, mut hi) = (-50.0f32, 50.0f32);
        let mut probe = FastEngine::new(sae.clone(), adam.clone(), cfg.step_config());
        for _ in 0..30 {
            let mid = 0.5 * (lo + hi);
            let mut s2 = sae.clone();
            s2.b_enc.iter_mut().for_each(|b| *b = mid);
            probe.restore(&s2, &adam).unwrap();
            let l0 = probe.reconstruct(&xs, a.batch).unwrap().stats.l0();
            if l0 > target {
                hi = mid
            } else {
                lo = mid
            }
        }
        let mut s2 = sae.clone();
        s2.b_enc.iter_mut().for_each(|b| *b = 0.5 * (lo + hi));
        for (name, dense) in [("dense", true), ("sparse", false)] {
            let mut e = FastEngine::new(s2.clone(), adam.clone(), cfg.step_config());
            e.force_dense = dense;
            e.sparse_max_density = 1.0;
            e.step(&xs, a.batch, 1e-9, 0.0).unwrap(); // warm-up (allocations)
            let t0 = Instant::now();
            let reps = 3;
            let mut l0 = 0.0;
            for _ in 0..reps {
                l0 = e.step(&xs, a.batch, 1e-9, 0.0).unwrap().l0();
            }
            let ms = t0.elapsed().as_secs_f64() * 1000.0 / reps as f64;
            println!(
                "L0 {l0:7.1} ({:5.2}% dense) {name:6}: {ms:7.1} ms/step, {:6.0} tokens/s",
                100.0 * l0 / a.d_sae as f64,
                a.batch as f64 / ms * 1000.0
            );
        }
    }
}

/// The benchmark run's settings as a partial config.
fn partial_for(a: &Args) -> PartialConfig {
    PartialConfig {
        acts: Some("bench".into()),
        hook: Some("x".into()),
        d_sae: Some(a.d_sae),
        tokens: Some(a.steps * a.batch as u64),
        batch: Some(a.batch),
        lr: Some(a.lr),
        l1_coefficient: Some(a.l1),
        engine: Some(EngineChoice::Fast),
        l1_warmup_frac: (a.pretrain_steps > 0).then_some(0.0),
        ..Default::default()
    }
}
