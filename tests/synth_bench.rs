//! The SynthSAEBench-grade generator (`unravel::synth::bench`): its statistics against the spec
//! (true L0, frequencies, magnitudes, the hierarchy's rules, correlation), rows fixed by index,
//! and streamed training (`unravel train --synth`) deterministic and resumable.

mod common;

use std::path::Path;

use common::{ok, p, unravel};
use unravel::synth::bench::stats::measure;
use unravel::synth::bench::{BenchModel, BenchSpec};

/// A spec whose codes are cheap to sample: the dictionary is not needed for codes.
fn no_dictionary(spec: BenchSpec) -> BenchSpec {
    BenchSpec {
        dims: 8,
        ortho_steps: 0,
        ..spec
    }
}

fn build(spec: &BenchSpec) -> BenchModel {
    spec.check().unwrap();
    BenchModel::build(spec, &mut |_, _| {})
}

/// |measured − p| within 5 binomial standard deviations over `rows` rows (plus a hair).
fn within_binomial(measured: f64, p: f64, rows: u64) -> bool {
    (measured - p).abs() <= 5.0 * (p * (1.0 - p) / rows as f64).sqrt() + 1e-4
}

#[test]
fn the_16k_preset_has_true_l0_near_34_and_keeps_the_hierarchy_rules() {
    let model = build(&no_dictionary(BenchSpec::default()));
    let rows = 4000;
    let s = measure(&model, 0, rows);
    // SAELens's docs: "~34 active features per sample", "~25 in the top 4096".
    assert!((s.l0 - 34.0).abs() < 2.0, "true L0 {}", s.l0);
    assert!(
        (s.l0_first_4096 - 25.0).abs() < 2.0,
        "L0 of the first 4096 {}",
        s.l0_first_4096
    );
    assert_eq!(s.orphans, 0);
    assert_eq!(s.exclusion_violations, 0);
    let size = model.hierarchy.size;
    let measured: f64 = (128..size).map(|f| s.frequencies[f]).sum();
    let wanted: f64 = (128..size).map(|f| model.base_probabilities[f]).sum();
    eprintln!(
        "children: {measured} of {wanted}; L0 {} {}",
        s.l0, s.l0_first_4096
    );
}

#[test]
fn frequencies_follow_the_spec() {
    // Without exclusion and correlation, compensation is exact: a child fires with its
    // parent's probability times base_child / base_parent, so every feature, at every level,
    // fires with its Zipf probability.
    let spec = no_dictionary(BenchSpec {
        exclusive: 0.0,
        correlation_rank: 0,
        ..BenchSpec::preset("synth-sae-bench-tiny").unwrap()
    });
    let model = build(&spec);
    let rows = 40_000;
    let s = measure(&model, 0, rows);
    assert_eq!(s.orphans, 0);
    let base = &model.base_probabilities;
    let off = |s: &unravel::synth::bench::stats::Stats, from: usize, to: usize| -> Vec<usize> {
        (from..to)
            .filter(|&f| !within_binomial(s.frequencies[f], base[f], rows))
            .collect()
    };
    assert!(
        off(&s, 0, spec.features).is_empty(),
        "{:?}",
        off(&s, 0, spec.features)
    );
    // With the copula (correlation) the marginals stay: roots and features outside the
    // hierarchy still fire with their probability.
    let spec = no_dictionary(BenchSpec::preset("synth-sae-bench-tiny").unwrap());
    let model = build(&spec);
    let s = measure(&model, 0, rows);
    assert_eq!((s.orphans, s.exclusion_violations), (0, 0));
    let size = model.hierarchy.size;
    let mut bad = off(&s, 0, spec.roots);
    bad.extend(off(&s, size, spec.features));
    assert!(bad.is_empty(), "off their probability: {bad:?}");
    // Exclusion compensated only approximately (SAELens's words): children fire less than
    // their Zipf probability, but more than without compensation.
    let child = |s: &unravel::synth::bench::stats::Stats| -> f64 {
        (spec.roots..size).map(|f| s.frequencies[f]).sum()
    };
    let wanted: f64 = (spec.roots..size).map(|f| base[f]).sum();
    let plain = build(&BenchSpec {
        compensate: false,
        ..spec.clone()
    });
    let (with, without) = (child(&s), child(&measure(&plain, 0, 10_000)));
    assert!(
        without < 0.4 * wanted && with > 0.5 * wanted && with < wanted,
        "{without} < {with} < {wanted}"
    );
}

#[test]
fn magnitudes_follow_the_spec() {
    let spec = no_dictionary(BenchSpec {
        roots: 0,
        correlation_rank: 0,
        features: 200,
        p_min: 0.05,
        ..BenchSpec::default()
    });
    let model = build(&spec);
    let s = measure(&model, 0, 20_000);
    for f in [0, 100, 199] {
        // relu(mean + std·z) with mean ≥ 4 and std ~ 0.5: the relu never bites.
        let (mean, std) = (
            model.mean_magnitudes[f] as f64,
            model.std_magnitudes[f] as f64,
        );
        let n = s.frequencies[f] * 20_000.0;
        let tol = 5.0 * std / n.sqrt() + 1e-3;
        assert!(
            (s.mean_active_value[f] - mean).abs() < tol,
            "feature {f}: {} vs {mean}",
            s.mean_active_value[f]
        );
    }
    assert_eq!(
        (model.mean_magnitudes[0], model.mean_magnitudes[199]),
        (5.0, 4.0)
    );
    // Stds: |N(0.5, 0.5²)| has mean 0.5·(1 − 2Φ(−1)) + 0.5·√(2/π)·e^(−1/2) ≈ 0.5987.
    let m: f64 = model.std_magnitudes.iter().map(|&v| v as f64).sum::<f64>() / 200.0;
    assert!((m - 0.5987).abs() < 0.08, "{m}");
}

#[test]
fn children_are_scaled_by_their_parents() {
    let spec = no_dictionary(BenchSpec::preset("synth-sae-bench-tiny").unwrap());
    let model = build(&spec);
    let h = &model.hierarchy;
    let mut checked = 0;
    for i in 0..3000 {
        let row = model.row_codes(i);
        for &(f, v) in &row {
            let parent = h.parent[f as usize];
            if parent == unravel::synth::bench::hierarchy::NONE {
                continue;
            }
            let pv = row.iter().find(|c| c.0 == parent).unwrap().1;
            // The child's own draw, relu(mean + std·z), times parent / parent mean: within
            // (mean ± 6 std) · parent / parent mean.
            let scale = pv / model.mean_magnitudes[parent as usize];
            let (mean, std) = (
                model.mean_magnitudes[f as usize],
                model.std_magnitudes[f as usize],
            );
            let raw = v / scale;
            assert!(
                (raw - mean).abs() <= 6.0 * std + 1e-4,
                "{f}: {raw} vs {mean}±{std}"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn correlated_firing_follows_the_factor() {
    // One factor, strong: features with factors of the same sign fire together more often
    // than independent ones would, opposite signs less.
    let spec = no_dictionary(BenchSpec {
        features: 16,
        roots: 0,
        correlation_rank: 1,
        correlation_scale: 0.8,
        p_max: 0.3,
        p_min: 0.1,
        ..BenchSpec::default()
    });
    let model = build(&spec);
    let c = model.correlation.as_ref().unwrap();
    let rows = 20_000u64;
    let codes: Vec<Vec<(u32, f32)>> = (0..rows).map(|i| model.row_codes(i)).collect();
    let fires =
        |f: u32| -> Vec<bool> { codes.iter().map(|r| r.iter().any(|c| c.0 == f)).collect() };
    let (mut agree, mut pairs) = (0, 0);
    for i in 0..16u32 {
        for j in 0..i {
            let rho = c.factor_t[i as usize] * c.factor_t[j as usize];
            if rho.abs() < 0.15 {
                continue;
            }
            let (a, b) = (fires(i), fires(j));
            let n = rows as f64;
            let pa = a.iter().filter(|&&x| x).count() as f64 / n;
            let pb = b.iter().filter(|&&x| x).count() as f64 / n;
            let pab = a.iter().zip(&b).filter(|(x, y)| **x && **y).count() as f64 / n;
            let phi = (pab - pa * pb) / (pa * (1.0 - pa) * pb * (1.0 - pb)).sqrt();
            pairs += 1;
            agree += (phi.signum() == rho.signum() as f64 && phi.abs() > 0.03) as usize;
        }
    }
    assert!(
        pairs >= 10 && agree == pairs,
        "{agree} of {pairs} pairs follow the factor"
    );
}

#[test]
fn rows_are_fixed_by_index_and_x_is_the_codes_through_the_dictionary() {
    let spec = BenchSpec {
        ortho_steps: 5,
        ..BenchSpec::preset("synth-sae-bench-tiny").unwrap()
    };
    let model = build(&spec);
    let (x, codes) = model.sample(100, 64);
    let (x2, codes2) = model.sample(132, 32);
    let d = spec.dims;
    assert_eq!(&x[32 * d..], &x2[..]);
    assert_eq!(codes.row(40), codes2.row(8));
    assert_eq!(model.sample_x(100, 64), x);
    // Rebuilding from the spec gives the same model and rows.
    assert_eq!(build(&spec).sample_x(100, 64), x);
    // x = Σ a_i · direction_i + bias.
    let (f, v) = codes.row(3);
    assert!(!f.is_empty());
    for j in 0..d {
        let want: f32 = model.bias[j]
            + f.iter()
                .zip(v)
                .map(|(&f, &a)| a * model.directions[f as usize * d + j])
                .sum::<f32>();
        assert!((x[3 * d + j] - want).abs() < 1e-4);
    }
    // Another seed, other rows.
    let other = build(&BenchSpec { seed: 43, ..spec });
    assert_ne!(other.sample_x(100, 4), model.sample_x(100, 4));
}

fn weights(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("sae_weights.safetensors")).unwrap()
}

fn synth_train(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--synth",
        "synth-sae-bench-tiny",
        "--d-sae",
        "128",
        "--tokens",
        "40960",
        "--batch",
        "512",
        "--eval-tokens",
        "2048",
        "--checkpoint-every",
        "10240",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(p(out));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn streamed_training_is_deterministic_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let args = synth_train(&a, &[]);
    let r = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.stdout.contains("trained 80 steps"), "{}", r.stdout);
    assert!(r.stderr.contains("no shards written"), "{}", r.stderr);
    let args = synth_train(&b, &[]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(weights(&a) == weights(&b), "two runs of one seed differ");
    // Killed after step 50 (last checkpoint at step 40), then resumed.
    let args = synth_train(&c, &[]);
    let r = unravel(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("UNRAVEL_CRASH_AFTER_STEP", "50")],
    );
    assert_ne!(r.code, 0, "the run should have crashed");
    let r = ok(&["train", "--resume", &p(&c)]);
    assert!(r.stdout.contains("trained 80 steps"), "{}", r.stdout);
    assert!(weights(&a) == weights(&c), "resumed weights differ");
    // The saved config names the generator, so --resume needs nothing else; --acts with
    // --synth is refused.
    let cfg = std::fs::read_to_string(c.join("config.toml")).unwrap();
    assert!(cfg.contains("synth = \"synth-sae-bench-tiny\""), "{cfg}");
    let r = unravel(
        &[
            "train",
            "--synth",
            "synth-sae-bench-tiny",
            "--acts",
            "x",
            "--out",
            &p(&tmp.path().join("d")),
        ],
        &[],
    );
    assert_ne!(r.code, 0);
}

#[test]
fn verify_scores_a_streamed_run_on_the_generators_held_out_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let args = synth_train(&run, &[]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let r = ok(&[
        "verify",
        "--synth",
        "synth-sae-bench-tiny",
        "--sae",
        &p(&run),
        "--samples",
        "2048",
    ]);
    assert!(
        r.stdout
            .contains("1024 planted features vs 128 latents (96 dims)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("on 2048 samples"), "{}", r.stdout);
    // Only the 16k preset has published rows to print.
    assert!(!r.stdout.contains("published"), "{}", r.stdout);
    // The trainer's final evaluation read the same 2048 held-out rows (from 2^62 on): two
    // implementations of EV over one sample must agree.
    let v = common::json(&run.join("verify.json"));
    let ev_verify = v["samples"]["explained_variance"].as_f64().unwrap();
    let e = common::json(&run.join("eval.json"));
    let ev_train = e["ev"].as_f64().unwrap();
    assert!(
        (ev_verify - ev_train).abs() < 2e-3,
        "verify EV {ev_verify}, train EV {ev_train}"
    );
    let l0 = v["samples"]["l0"].as_f64().unwrap();
    assert!((l0 - e["l0"].as_f64().unwrap()).abs() < 0.05, "{l0} vs {e}");

    // Bad input: another generator's width (refused before its minute-long build), an unknown
    // generator, and --truth with --synth.
    let r = unravel(
        &[
            "verify",
            "--synth",
            "synth-sae-bench-16k",
            "--sae",
            &p(&run),
        ],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("the SAE reads d_in = 96, the --synth generator has 768 dims"),
        "{}",
        r.stderr
    );
    let r = unravel(
        &["verify", "--synth", "no-such-preset", "--sae", &p(&run)],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--synth"), "{}", r.stderr);
    let r = unravel(
        &[
            "verify",
            "--synth",
            "synth-sae-bench-tiny",
            "--truth",
            "x",
            "--sae",
            &p(&run),
        ],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
}

/// A checkpoint of a streamed run resumes on rows regenerated by index, and `verify --synth`
/// regenerates the held-out rows, so the generator's draws are part of every saved run: a change
/// that alters them (a faster sampler that is "equal in distribution") must also change the
/// stream's fingerprint, so old runs refuse to resume instead of silently training on other rows.
/// This pins the 16k preset's codes (which features fire, and their magnitudes).
#[test]
fn the_16k_presets_draws_are_pinned() {
    let model = build(&no_dictionary(BenchSpec::default()));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for start in [0u64, 5_000, 1 << 62] {
        for row in model.codes(start, 600) {
            for (f, v) in row {
                h = (h ^ ((f as u64) << 32 | v.to_bits() as u64)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    assert_eq!(format!("{h:016x}"), "5c0092bbcea5a0bf");
}
