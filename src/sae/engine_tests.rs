#![allow(clippy::needless_range_loop)] // k indexes parallel per-tensor arrays
//! The engines against each other and against candle's autograd.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::fast::FastEngine;
use super::model::Sae;
use super::optim::{AdamConfig, AdamState};
use super::plain::PlainEngine;
use super::step::{Engine, StepConfig};

fn cfg(april: bool) -> StepConfig {
    StepConfig {
        decoder_norm_l1: april,
        unit_norm_decoder: !april,
        clip_norm: if april { Some(1.0) } else { None },
        adam: AdamConfig::default(),
    }
}

/// Sparse-ish inputs: a few of `k` random directions per row with Exponential magnitudes.
fn data(rows: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let k = 3 * d;
    let dirs: Vec<f32> = (0..k * d)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    let mut x = vec![0f32; rows * d];
    for r in 0..rows {
        for j in 0..k {
            if rng.random::<f32>() < 0.08 {
                let a = -rng.random::<f32>().max(1e-6).ln();
                for c in 0..d {
                    x[r * d + c] += a * dirs[j * d + c] / (d as f32).sqrt();
                }
            }
        }
    }
    x
}

fn sae(d: usize, s: usize, april: bool, seed: u64) -> Sae {
    let mut sae = if april {
        Sae::init_april(d, s, 0.1, seed)
    } else {
        Sae::init_unit_norm(d, s, vec![0.01; d], seed)
    };
    // Non-zero biases so every term of the gradient is exercised.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    sae.b_enc = (0..s).map(|_| rng.random::<f32>() * 0.1 - 0.06).collect();
    sae.b_dec = (0..d).map(|_| rng.random::<f32>() * 0.1 - 0.05).collect();
    sae
}

/// A fresh f64 plain engine (the gradient reference).
fn plain_f64(sae: &Sae, april: bool) -> PlainEngine {
    PlainEngine::new(
        sae,
        &AdamState::zeros(lens(sae)),
        cfg(april),
        &Device::Cpu,
        DType::F64,
    )
    .unwrap()
}

fn lens(s: &Sae) -> [usize; 6] {
    s.param_lens()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// The loss written as plain candle ops, differentiated by candle's autograd.
fn autograd_grads(sae: &Sae, x: &[f32], rows: usize, lam: f64, april: bool) -> Vec<Vec<f32>> {
    let dev = Device::Cpu;
    let (d, s) = (sae.d_in, sae.d_sae);
    let v = |data: &[f32], shape: &[usize]| {
        Var::from_tensor(
            &Tensor::from_slice(data, shape, &dev)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap(),
        )
        .unwrap()
    };
    let (we, be, wd, bd) = (
        v(&sae.w_enc, &[s, d]),
        v(&sae.b_enc, &[s]),
        v(&sae.w_dec, &[s, d]),
        v(&sae.b_dec, &[d]),
    );
    let x = Tensor::from_slice(x, (rows, d), &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let xin = if sae.apply_b_dec_to_input {
        x.broadcast_sub(bd.as_tensor()).unwrap()
    } else {
        x.clone()
    };
    let f = xin
        .matmul(&we.as_tensor().t().unwrap())
        .unwrap()
        .broadcast_add(be.as_tensor())
        .unwrap()
        .relu()
        .unwrap();
    let xh = f
        .matmul(wd.as_tensor())
        .unwrap()
        .broadcast_add(bd.as_tensor())
        .unwrap();
    let mse = ((xh - &x).unwrap().sqr().unwrap().sum_all().unwrap() / rows as f64).unwrap();
    let w = if april {
        wd.as_tensor()
            .sqr()
            .unwrap()
            .sum(1)
            .unwrap()
            .sqrt()
            .unwrap()
    } else {
        Tensor::ones(s, DType::F64, &dev).unwrap()
    };
    let l1 = (f.broadcast_mul(&w).unwrap().sum_all().unwrap() / rows as f64).unwrap();
    let loss = (mse + (l1 * lam).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    [&we, &be, &wd, &bd]
        .iter()
        .map(|p| {
            grads
                .get(p.as_tensor())
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn hand_written_gradients_match_autograd_on_both_engines_and_paths() {
    let (d, s, rows) = (12, 40, 64);
    let x = data(rows, d, 5);
    for april in [true, false] {
        let sae = sae(d, s, april, 9);
        let lam = 0.7f32;
        let reference = autograd_grads(&sae, &x, rows, lam as f64, april);
        let plain = plain_f64(&sae, april);
        let (pg, _) = plain.gradients(&x, rows, lam).unwrap();
        for k in 0..4 {
            let got = pg[k]
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let err = max_rel(&got, &reference[k]);
            assert!(err < 1e-5, "plain april={april} grad {k}: rel err {err}");
        }
        for dense in [false, true] {
            let mut fast = FastEngine::new(sae.clone(), AdamState::zeros(lens(&sae)), cfg(april));
            fast.force_dense = dense;
            let stats = fast.backward(&x, rows, lam);
            assert!(
                stats.l0() > 0.5 && stats.l0() < s as f64,
                "l0 {}",
                stats.l0()
            );
            for k in 0..4 {
                let err = max_rel(&fast.grads()[k], &reference[k]);
                assert!(
                    err < 2e-5,
                    "fast dense={dense} april={april} grad {k}: rel err {err}"
                );
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    // Central differences of the f64 loss on a few coordinates of each tensor.
    let (d, s, rows) = (6, 10, 16);
    let x = data(rows, d, 11);
    for april in [true, false] {
        let sae = sae(d, s, april, 3);
        let lam = 0.5;
        let plain = plain_f64(&sae, april);
        let (g, _) = plain.gradients(&x, rows, lam).unwrap();
        let loss = |p: &Sae| -> f64 {
            let e = plain_f64(p, april);
            let (_, st) = e.gradients(&x, rows, lam).unwrap();
            st.mse() + lam as f64 * st.l1()
        };
        for k in 0..4 {
            let gk = g[k].flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for j in [0, gk.len() / 2, gk.len() - 1] {
                let h = 1e-3f32;
                let mut a = sae.clone();
                let mut b = sae.clone();
                a.params_mut()[k][j] += h;
                b.params_mut()[k][j] -= h;
                let fd = (loss(&a) - loss(&b)) / (2.0 * h as f64);
                assert!(
                    (fd - gk[j]).abs() < 2e-3 * (1.0 + gk[j].abs()),
                    "april={april} tensor {k}[{j}]: finite difference {fd} vs {}",
                    gk[j]
                );
            }
        }
    }
}

#[test]
fn fast_and_plain_engines_train_alike() {
    let (d, s, rows) = (16, 64, 128);
    for april in [true, false] {
        let sae = sae(d, s, april, 21);
        let adam = AdamState::zeros(lens(&sae));
        let mut plain =
            PlainEngine::new(&sae, &adam, cfg(april), &Device::Cpu, DType::F32).unwrap();
        let mut fast = FastEngine::new(sae.clone(), adam.clone(), cfg(april));
        for step in 0..20 {
            let x = data(rows, d, 100 + step);
            let a = plain.step(&x, rows, 1e-3, 0.3).unwrap();
            let b = fast.step(&x, rows, 1e-3, 0.3).unwrap();
            assert!(
                (a.mse() - b.mse()).abs() < 1e-4 * (1.0 + a.mse()),
                "step {step}: mse {} vs {}",
                a.mse(),
                b.mse()
            );
            assert_eq!(a.active, b.active, "step {step}");
            assert_eq!(a.fired, b.fired);
        }
        let (pa, ma) = plain.snapshot().unwrap();
        let (pb, mb) = fast.snapshot().unwrap();
        assert_eq!(ma.t, 20);
        assert_eq!(mb.t, 20);
        for (x, y) in pa.params().iter().zip(pb.params()) {
            let err = max_rel(x, y);
            assert!(err < 1e-3, "april={april}: params differ by {err}");
        }
        if !april {
            for n in pb.decoder_norms() {
                assert!((n - 1.0).abs() < 1e-5, "unit-norm decoder row has norm {n}");
            }
        }
    }
}

#[test]
fn fast_engine_is_deterministic_and_reconstruct_agrees_with_step_stats() {
    let (d, s, rows) = (16, 64, 96);
    let sae = sae(d, s, true, 2);
    let run = || {
        let mut e = FastEngine::new(sae.clone(), AdamState::zeros(lens(&sae)), cfg(true));
        for i in 0..5 {
            e.step(&data(rows, d, i), rows, 1e-3, 0.2).unwrap();
        }
        e.snapshot().unwrap()
    };
    assert_eq!(run(), run());
    let mut e = FastEngine::new(sae.clone(), AdamState::zeros(lens(&sae)), cfg(true));
    let x = data(rows, d, 42);
    let r = e.reconstruct(&x, rows).unwrap();
    let b = e.backward(&x, rows, 0.0);
    assert!((r.stats.sq_err - b.sq_err).abs() < 1e-4 * b.sq_err);
    assert_eq!(r.stats.fired, b.fired);
    // The host encode/decode of the model agrees too.
    let f = sae.encode(&x);
    let xh = sae.decode(&f);
    assert!(max_rel(&xh, &r.x_hat) < 1e-5);
}

/// SAELens 6's `GatedTrainingSAE` on fixed tiny weights (float64, from
/// `scripts/gated_sae_reference.py`): our host encode gives its feature activations, and the
/// plain engine its MSE, L1 term and the gradient of its total loss (MSE + λ·L1 + the gate
/// path's reconstruction) for every parameter.
#[test]
fn gated_step_matches_saelens() {
    let fx: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/gated/step.json")).unwrap();
    fn flat_fn(v: &serde_json::Value) -> Vec<f64> {
        match v {
            serde_json::Value::Array(a) => a.iter().flat_map(flat_fn).collect(),
            v => vec![v.as_f64().unwrap()],
        }
    }
    let f32s =
        |v: &serde_json::Value| -> Vec<f32> { flat_fn(v).iter().map(|&x| x as f32).collect() };
    let (d, s) = (
        fx["d_in"].as_u64().unwrap() as usize,
        fx["d_sae"].as_u64().unwrap() as usize,
    );
    let lam = fx["l1_coefficient"].as_f64().unwrap() as f32;
    let x = f32s(&fx["x"]);
    let rows = x.len() / d;
    let p = &fx["params"];
    // SAELens's W_enc [d_in, d_sae] → our feature-major rows.
    let transpose = |w: &[f64], r: usize, c: usize| -> Vec<f64> {
        (0..c * r).map(|k| w[(k % r) * c + k / r]).collect()
    };
    let mut sae = Sae::zeros_gated(d, s, true);
    sae.w_enc = transpose(&flat_fn(&p["W_enc"]), d, s)
        .iter()
        .map(|&v| v as f32)
        .collect();
    sae.b_enc = f32s(&p["b_gate"]);
    sae.r_mag = f32s(&p["r_mag"]);
    sae.b_mag = f32s(&p["b_mag"]);
    sae.w_dec = f32s(&p["W_dec"]);
    sae.b_dec = f32s(&p["b_dec"]);

    let acts = sae.encode(&x);
    let want = flat_fn(&fx["feature_acts"]);
    for (a, b) in acts.iter().zip(&want) {
        assert!(
            (*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()),
            "feature {a} vs {b}"
        );
    }
    assert!(acts.iter().filter(|&&a| a > 0.0).count() > 0);

    let engine = PlainEngine::new(
        &sae,
        &AdamState::for_sae(&sae),
        cfg(true),
        &Device::Cpu,
        DType::F64,
    )
    .unwrap();
    let (grads, stats) = engine.gradients(&x, rows, lam).unwrap();
    let losses = &fx["losses"];
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() < 1e-5 * (1.0 + b.abs()),
            "{what}: ours {a} vs SAELens {b}"
        )
    };
    close(
        stats.mse(),
        losses["mse_loss"].as_f64().unwrap(),
        "mse_loss",
    );
    close(
        lam as f64 * stats.l1(),
        losses["l1_loss"].as_f64().unwrap(),
        "l1_loss",
    );
    let names = ["W_enc", "b_gate", "W_dec", "b_dec", "r_mag", "b_mag"];
    assert_eq!(grads.len(), 6);
    // The fast engine (f32, sparse over the open gates) too.
    let mut fast = FastEngine::new(sae.clone(), AdamState::for_sae(&sae), cfg(true));
    let fstats = fast.backward(&x, rows, lam);
    close(
        fstats.mse(),
        losses["mse_loss"].as_f64().unwrap(),
        "fast mse_loss",
    );
    close(
        lam as f64 * fstats.l1(),
        losses["l1_loss"].as_f64().unwrap(),
        "fast l1_loss",
    );
    assert_eq!(fstats.fired, stats.fired);
    let fast_grads: Vec<Vec<f64>> = fast
        .grads()
        .iter()
        .map(|g| g.iter().map(|&v| v as f64).collect())
        .collect();
    for (k, name) in names.iter().enumerate() {
        let ours = grads[k].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let scale = ours.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (j, (a, b)) in fast_grads[k].iter().zip(&ours).enumerate() {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + scale),
                "fast ∂L/∂{name}[{j}]: {a} vs plain {b}"
            );
        }
        let mut theirs = flat_fn(&fx["grads"][*name]);
        if k == 0 {
            theirs = transpose(&theirs, d, s);
        }
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (j, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() < 1e-5 * (1.0 + scale),
                "∂L/∂{name}[{j}]: ours {a} vs SAELens {b}"
            );
        }
    }
}

/// The plain engine's gated forward equals the host encode/decode, and steps keep the gated
/// parameters moving (the gate's own parameters get gradients).
#[test]
fn gated_plain_engine_reconstructs_as_the_host_and_trains() {
    let (d, s, rows) = (16, 64, 128);
    let mut sae = Sae::init_gated(d, s, 0.1, 5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    sae.b_enc = (0..s).map(|_| rng.random::<f32>() * 0.1 - 0.05).collect();
    sae.b_mag = (0..s).map(|_| rng.random::<f32>() * 0.1 - 0.05).collect();
    sae.r_mag = (0..s).map(|_| rng.random::<f32>() * 0.4 - 0.2).collect();
    let mut e = PlainEngine::new(
        &sae,
        &AdamState::for_sae(&sae),
        cfg(true),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let x = data(rows, d, 9);
    let r = e.reconstruct(&x, rows).unwrap();
    let f = sae.encode(&x);
    assert!(max_rel(&sae.decode(&f), &r.x_hat) < 1e-5);
    let active = f.iter().filter(|&&v| v > 0.0).count() as u64;
    assert_eq!(r.stats.active, active);
    let first = e.step(&x, rows, 1e-3, 0.3).unwrap();
    for i in 0..30 {
        e.step(&data(rows, d, 10 + i), rows, 1e-3, 0.3).unwrap();
    }
    let last = e.step(&x, rows, 1e-3, 0.3).unwrap();
    assert!(last.mse() < first.mse(), "{} → {}", first.mse(), last.mse());
    let (after, adam) = e.snapshot().unwrap();
    assert!(after.is_gated() && adam.m[4].len() == s && adam.t == 32);
    assert!(after.r_mag != sae.r_mag && after.b_mag != sae.b_mag);

    // The fast engine trains alike, and reconstructs as the host does.
    let mut fast = FastEngine::new(sae.clone(), AdamState::for_sae(&sae), cfg(true));
    let r = fast.reconstruct(&x, rows).unwrap();
    assert!(max_rel(&sae.decode(&f), &r.x_hat) < 1e-5);
    assert_eq!(r.stats.active, active);
    fast.step(&x, rows, 1e-3, 0.3).unwrap();
    for i in 0..30 {
        fast.step(&data(rows, d, 10 + i), rows, 1e-3, 0.3).unwrap();
    }
    let b = fast.step(&x, rows, 1e-3, 0.3).unwrap();
    assert!((b.mse() - last.mse()).abs() < 1e-3 * (1.0 + last.mse()));
    let (fast_sae, _) = fast.snapshot().unwrap();
    for (x, y) in fast_sae.params().iter().zip(after.params()) {
        let err = max_rel(x, y);
        assert!(err < 1e-3, "gated: fast and plain params differ by {err}");
    }
}

/// The AMX bf16 screen (`kernels::screened`) changes no number a ReLU SAE reads: on a sparse
/// SAE, every step's features, gradients and updates equal the f32 encoder's up to f32 order.
#[test]
fn screened_encoder_trains_as_the_f32_encoder() {
    if !crate::kernels::amx::available() {
        eprintln!("no AMX on this CPU: skipped");
        return;
    }
    for gated in [false, true] {
        screened_trains_as_f32(gated);
    }
}

fn screened_trains_as_f32(gated: bool) {
    let (d, s, rows) = (64, 512, 300);
    let mut sae = if gated {
        Sae::init_gated(d, s, 0.1, 4)
    } else {
        sae(d, s, true, 4)
    };
    let new = |sae: &Sae| FastEngine::new(sae.clone(), AdamState::zeros(lens(sae)), cfg(true));
    // Sparse: lower the encoder biases until under 1% of the pre-activations are positive.
    let x0 = data(rows, d, 200);
    loop {
        let mut probe = new(&sae);
        probe.f32_encoder = true;
        if (probe.backward(&x0, rows, 0.3).active as f64) < 0.01 * (rows * s) as f64 {
            break;
        }
        sae.b_enc.iter_mut().for_each(|b| *b -= 0.01);
    }
    let mut screened = new(&sae);
    let mut f32_only = new(&sae);
    f32_only.f32_encoder = true;
    for step in 0..8 {
        let x = data(rows, d, 200 + step);
        let a = screened.backward(&x, rows, 0.3);
        let b = f32_only.backward(&x, rows, 0.3);
        let density = b.active as f64 / (rows * s) as f64;
        let recomputed = screened.last_recomputed.unwrap_or_else(|| {
            panic!("gated {gated} step {step}: the screen did not run (density {density})")
        });
        // Gated: `active` counts features on (f > 0), a subset of the open gates recomputed.
        assert!(
            density > 0.001 && density < 0.03,
            "gated {gated}: density {density}"
        );
        assert!(recomputed >= b.active && (recomputed as f64) < 0.04 * (rows * s) as f64);
        assert_eq!(f32_only.last_recomputed, None);
        assert_eq!(a.active, b.active, "gated {gated} step {step}");
        assert_eq!(a.fired, b.fired, "gated {gated} step {step}");
        assert!((a.sq_err - b.sq_err).abs() < 1e-5 * b.sq_err, "step {step}");
        for k in 0..6 {
            let err = max_rel(&screened.grads()[k], &f32_only.grads()[k]);
            assert!(
                err < 1e-5,
                "gated {gated} step {step} grad {k}: rel err {err}"
            );
        }
        screened.step(&x, rows, 1e-3, 0.3).unwrap();
        f32_only.step(&x, rows, 1e-3, 0.3).unwrap();
    }
    let (pa, _) = screened.snapshot().unwrap();
    let (pb, _) = f32_only.snapshot().unwrap();
    // Adam's m/√v turns f32-order differences in tiny gradients into visible ones.
    for (k, (x, y)) in pa.params().iter().zip(pb.params()).enumerate() {
        let err = max_rel(x, y);
        assert!(err < 1e-4, "gated {gated} parameter {k}: rel err {err}");
    }
    // A dense batch (all biases high) is left to the f32 GEMM by the probe.
    let mut dense = new(&sae);
    dense.sae.b_enc.iter_mut().for_each(|b| *b += 1.0);
    dense.backward(&data(rows, d, 7), rows, 0.3);
    assert_eq!(dense.last_recomputed, None);
}
