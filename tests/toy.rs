//! Toy models of superposition (Elhage et al. 2022): the paper's known results on shortened,
//! seeded CPU runs, each check written so that a random W fails it.

use std::path::PathBuf;

use candle_core::Device;
use unravel::toy::experiments::{FeatureRow, PhaseClass, Summary};
use unravel::toy::metrics::{angle_gaps, geometry};
use unravel::toy::output::{summary_text, write_outputs};
use unravel::toy::{run_experiment, Experiment, ToyFile, ToyResults, ToySettings};

fn run(s: &ToySettings) -> ToyResults {
    run_experiment(s, &Device::Cpu, &mut |_, _| {}).unwrap()
}

fn feature_rows(r: &ToyResults) -> &[FeatureRow] {
    match &r.summary {
        Summary::Features(rows) | Summary::SparseVsDense { rows, .. } => rows,
        other => panic!("not a feature summary: {other:?}"),
    }
}

/// The pentagon: 5 features, norms 1.13, D_i 2/5, 72° apart, b ≈ −0.25.
fn check_pentagon(norms: &[f64], dims: &[f64], angles: &[f64], mean_b: f64) -> Result<(), String> {
    if norms.len() != 5 || norms.iter().any(|n| (n - 1.13).abs() > 0.06) {
        return Err(format!("norms {norms:?} not all 1.13 ± 0.06"));
    }
    if dims.iter().any(|d| (d - 0.40).abs() > 0.03) {
        return Err(format!("D_i {dims:?} not all 0.40 ± 0.03"));
    }
    let gaps = angle_gaps(angles);
    if gaps.iter().any(|g| (g - 72.0).abs() > 4.0) {
        return Err(format!("angle gaps {gaps:?} not all 72° ± 4°"));
    }
    if (mean_b + 0.25).abs() > 0.06 {
        return Err(format!("mean b {mean_b} not −0.25 ± 0.06"));
    }
    Ok(())
}

#[test]
fn pentagon_five_features_evenly_spaced() {
    let mut s = ToySettings::defaults(Experiment::Pentagon);
    s.instances = 4;
    s.steps = 2500;
    s.batch = 512;
    s.lr = 3e-3;
    let r = run(&s);
    let best = r.configs[0].best();
    let g = &best.geometry;
    let mean_b = best.b.iter().map(|&v| v as f64).sum::<f64>() / 5.0;
    let checked = check_pentagon(
        &g.norms,
        &g.dimensionality,
        g.angles.as_ref().unwrap(),
        mean_b,
    );
    assert!(checked.is_ok(), "{checked:?}\n{}", summary_text(&r));
    assert_eq!(feature_rows(&r)[0].angle_gaps.as_ref().unwrap().len(), 5);

    // The check can fail: the untrained initialisation (a random W, b = 0) does.
    let w: Vec<f32> = (0..10)
        .map(|k| ((k * 7919 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let rg = geometry(&w, 2, 5);
    assert!(check_pentagon(
        &rg.norms,
        &rg.dimensionality,
        rg.angles.as_ref().unwrap(),
        0.0
    )
    .is_err());

    // Every output is written.
    let dir = tempfile::tempdir().unwrap();
    let files = write_outputs(&r, dir.path()).unwrap();
    for name in [
        "results.json",
        "features.svg",
        "norms.svg",
        "dimensionality.svg",
        "wtw.svg",
        "loss.svg",
    ] {
        assert!(files.contains(&dir.path().join(name)), "{name} missing");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["configs"][0]["instances"].as_array().unwrap().len(), 4);
    assert_eq!(
        json["configs"][0]["instances"][0]["w"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn dense_keeps_the_two_most_important_features() {
    let mut s = ToySettings::defaults(Experiment::SparseVsDense);
    s.densities = vec![0.99];
    s.instances = 3;
    s.steps = 2000;
    s.batch = 512;
    s.lr = 3e-3;
    let r = run(&s);
    let (rows, comparison) = match &r.summary {
        Summary::SparseVsDense { rows, comparison } => (rows, comparison.as_ref().unwrap()),
        other => panic!("{other:?}"),
    };
    let text = summary_text(&r);
    let dense = &rows[0];
    assert!(dense.label.contains("0.9^i"), "{text}");
    let (nm, dims) = (&dense.norms, &dense.dimensionality);
    assert!(nm[..2].iter().all(|n| (n - 1.0).abs() < 0.05), "{text}");
    assert!(nm[2..].iter().all(|n| *n < 0.3), "{text}");
    assert!(dims[0] > 0.95 && dims[1] > 0.9, "{text}");
    assert!(dims[2..].iter().all(|d| *d < 0.1), "{text}");
    // The two kept features are orthogonal.
    let gaps = dense.angle_gaps.as_ref().unwrap();
    assert!(gaps.iter().any(|g| (g - 90.0).abs() < 5.0), "{text}");

    // Equal importance: the exact loss of the two-orthogonal-features solution is
    // 3 (p/3 − p²/4) at p = 0.99, its Monte Carlo estimate agrees, and the learned loss is close.
    let exact = 3.0 * (0.99 / 3.0 - 0.99f64.powi(2) / 4.0);
    assert!((comparison.orthogonal_loss - exact).abs() < 1e-12);
    assert!(
        (comparison.orthogonal_loss_mc - exact).abs() < 0.002,
        "{text}"
    );
    assert!(comparison.learned_loss_mc < exact * 1.05, "{text}");
}

#[test]
fn interference_falls_with_hidden_size() {
    let mut s = ToySettings::defaults(Experiment::HiddenSizes);
    s.instances = 2;
    s.steps = 2000;
    s.batch = 512;
    s.lr = 3e-3;
    let r = run(&s);
    let rows = match &r.summary {
        Summary::HiddenSizes(rows) => rows,
        other => panic!("{other:?}"),
    };
    let text = summary_text(&r);
    let interference: Vec<f64> = rows.iter().map(|r| r.mean_interference).collect();
    assert_eq!(rows.len(), 8);
    assert!(interference[7] < 0.02, "{text}");
    assert!(rows[7].represented == 8, "{text}");
    for w in interference.windows(2).skip(1) {
        assert!(w[1] <= w[0] + 0.02, "{text}");
    }
    assert!(interference[1] > 0.2, "{text}");
}

#[test]
fn phase_diagram_corners() {
    let mut s = ToySettings::defaults(Experiment::Phase);
    s.densities = vec![1.0, 0.01];
    s.relative_importances = vec![0.1, 1.0, 10.0];
    s.instances = 4;
    s.steps = 3000;
    s.batch = 1024;
    s.lr = 1e-2;
    let r = run(&s);
    let p = match &r.summary {
        Summary::Phase(p) => p,
        other => panic!("{other:?}"),
    };
    let text = summary_text(&r);
    // Dense: the less important feature is dropped, the more important one takes the dimension.
    assert_eq!(p.classes[0][0], PhaseClass::NotRepresented, "{text}");
    assert_eq!(p.classes[0][2], PhaseClass::Dedicated, "{text}");
    // Sparse and equally important: both, antipodal.
    assert_eq!(p.classes[1][1], PhaseClass::Superposed, "{text}");
}

#[test]
fn loss_decreases_and_the_seed_fixes_everything() {
    let mut s = ToySettings::defaults(Experiment::Pentagon);
    s.instances = 3;
    s.steps = 200;
    s.batch = 128;
    s.eval_batches = 4;
    let a = run(&s);
    let b = run(&s);
    for (x, y) in a.configs[0].instances.iter().zip(&b.configs[0].instances) {
        assert!(x.loss < x.initial_loss, "{} !< {}", x.loss, x.initial_loss);
        let bits = |w: &Vec<Vec<f32>>| w.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x.w), bits(&y.w));
        assert_eq!(x.b, y.b);
    }
    assert!(a.curve.last().unwrap().1 < a.curve[0].1);
    s.seed = 1;
    let c = run(&s);
    assert_ne!(a.configs[0].instances[0].w, c.configs[0].instances[0].w);
}

#[test]
fn config_files_parse_and_validate() {
    for e in Experiment::ALL {
        let path = PathBuf::from(format!("configs/toy-{}.toml", e.name()));
        let file = ToyFile::load(&path).unwrap();
        assert_eq!(file.experiment().unwrap(), Some(e));
        let mut s = ToySettings::defaults(e);
        file.apply(&mut s);
        s.validate().unwrap();
        // The file spells out the defaults (log-spaced grids to 8 digits).
        let mut d = ToySettings::defaults(e);
        for (a, b) in [
            (&s.densities, &mut d.densities),
            (&s.relative_importances, &mut d.relative_importances),
        ] {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b.iter_mut()) {
                assert!(
                    (x - *y).abs() < 1e-6 * y.abs(),
                    "{}: {x} vs {y}",
                    path.display()
                );
                *y = *x;
            }
        }
        assert_eq!(s, d, "{} differs from the defaults", path.display());
    }
}

/// The full-size runs of every configs/toy-*.toml (release build:
/// `cargo test --release --test toy -- --ignored --nocapture`; TOY_ONLY=name runs one).
#[test]
#[ignore]
fn full_size_reference() {
    let only = std::env::var("TOY_ONLY").ok();
    for e in Experiment::ALL {
        if only.as_deref().is_some_and(|o| o != e.name()) {
            continue;
        }
        let path = PathBuf::from(format!("configs/toy-{}.toml", e.name()));
        let file = ToyFile::load(&path).unwrap();
        let mut s = ToySettings::defaults(e);
        file.apply(&mut s);
        let r = run(&s);
        let out = std::env::temp_dir()
            .join("unravel-toy-reference")
            .join(e.name());
        write_outputs(&r, &out).unwrap();
        println!("{}(outputs in {})\n", summary_text(&r), out.display());
    }
}
