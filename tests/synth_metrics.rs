//! SAELens's synthetic-data metrics in `unravel verify` (sample metrics from stored codes) and
//! `unravel train --target-l0`, end to end on tiny planted datasets.

mod common;

use common::{json, ok, p};

/// A planted dataset with its per-token codes stored: 48 features in 24 dims, 4 shards.
fn synth(dir: &std::path::Path, tokens: &str, seed: &str) {
    ok(&[
        "synth",
        "--features",
        "48",
        "--dims",
        "24",
        "--density",
        "0.05",
        "--tokens",
        tokens,
        "--shard-tokens",
        "8192",
        "--seed",
        seed,
        "--save-activations",
        "--out",
        &p(dir),
    ]);
}

fn train(acts: &std::path::Path, out: &std::path::Path, extra: &[&str]) {
    let (acts, out) = (p(acts), p(out));
    let mut args = vec![
        "train",
        "--acts",
        &acts,
        "--out",
        &out,
        "--d-sae",
        "96",
        "--tokens",
        "262144",
        "--batch",
        "256",
        "--lr",
        "3e-3",
        "--log-every",
        "16",
        "--eval-tokens",
        "8192",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

#[test]
fn verify_reports_saelens_metrics_on_the_stored_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let (acts, run) = (tmp.path().join("acts"), tmp.path().join("run"));
    synth(&acts, "32768", "7");
    train(&acts, &run, &["--l1-coefficient", "3"]);
    let r = ok(&[
        "verify",
        "--truth",
        &p(&acts),
        "--sae",
        &p(&run),
        "--samples",
        "8192",
    ]);
    assert!(r.stdout.contains("on 8192 samples"), "{}", r.stdout);
    let v = json(&run.join("verify.json"));
    let s = &v["samples"];
    assert_eq!(s["samples"], 8192);
    // 48 features at density 0.05: true L0 ≈ 2.4.
    let true_l0 = s["true_l0"].as_f64().unwrap();
    assert!((true_l0 - 2.4).abs() < 0.2, "{true_l0}");
    // A trained SAE on this easy case: good reconstruction, decoder close to the truth.
    for (k, lo) in [("explained_variance", 0.7), ("shrinkage", 0.5), ("f1", 0.2)] {
        let x = s[k].as_f64().unwrap();
        assert!(x > lo && x <= 1.0 + 1e-9, "{k} {x}");
    }
    let mcc = v["mcc"].as_f64().unwrap();
    assert!(mcc > 0.8, "{mcc}");
    assert_eq!(s["latents"].as_array().unwrap().len(), 96);
    // The F1 reported is the mean of the latents'.
    let mean: f64 = s["latents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["f1"].as_f64().unwrap())
        .sum::<f64>()
        / 96.0;
    assert!((mean - s["f1"].as_f64().unwrap()).abs() < 1e-9);

    // The same numbers from the truth folder itself, and from a dataset laid out as before the
    // `__unravel__/` folder (manifest and truth at the top level), named either way.
    let meta = acts.join("__unravel__");
    let same = |truth: &std::path::Path, name: &str| {
        let out = tmp.path().join(name);
        let args = ["verify", "--truth", &p(truth), "--sae", &p(&run)];
        ok(&[&args[..], &["--samples", "8192", "--json", &p(&out)]].concat());
        let w = json(&out);
        assert_eq!(
            (&w["mcc"], &w["samples"]),
            (&v["mcc"], &v["samples"]),
            "{name}"
        );
    };
    same(&meta.join("truth"), "truth-folder.json");
    std::fs::rename(meta.join("manifest.json"), acts.join("manifest.json")).unwrap();
    std::fs::rename(meta.join("truth"), acts.join("truth")).unwrap();
    std::fs::remove_dir(&meta).unwrap();
    same(&acts, "legacy.json");
    same(&acts.join("truth"), "legacy-truth-folder.json");

    // Without stored codes: the decoder metrics only, and a note.
    let plain = tmp.path().join("plain");
    ok(&[
        "synth",
        "--features",
        "48",
        "--dims",
        "24",
        "--density",
        "0.05",
        "--tokens",
        "4096",
        "--seed",
        "7",
        "--out",
        &p(&plain),
    ]);
    let json_out = tmp.path().join("v.json");
    let r = ok(&[
        "verify",
        "--truth",
        &p(&plain),
        "--sae",
        &p(&run),
        "--json",
        &p(&json_out),
    ]);
    assert!(r.stdout.contains("--save-activations"), "{}", r.stdout);
    assert!(json(&json_out).get("samples").is_none());
}

#[test]
fn target_l0_lands_within_one_of_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    synth(&acts, "32768", "11");
    // λ 3 alone ends at L0 ≈ 2.9 here; ask for 2 (λ must rise; the target annealed from the
    // first steered step's L0) and 12 (λ must fall; steered to 12 from the start).
    let annealed = ["--target-l0-from", "0.1", "--target-l0-anneal", "0.6"];
    let direct = ["--target-l0-anneal", "0"];
    for (target, extra) in [("2", &annealed[..]), ("12", &direct[..])] {
        let run = tmp.path().join(format!("t{target}"));
        let flags = [&["--l1-coefficient", "3", "--target-l0", target][..], extra].concat();
        train(&acts, &run, &flags);
        let l0 = json(&run.join("eval.json"))["l0"].as_f64().unwrap();
        let k: f64 = target.parse().unwrap();
        assert!((l0 - k).abs() <= 1.0, "target {k}: final L0 {l0}");
        // λ is logged, and it moved.
        let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let lam: Vec<f64> = lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "train")
            .map(|v| v["l1_coefficient"].as_f64().unwrap())
            .collect();
        let last = *lam.last().unwrap();
        assert!((last - 3.0).abs() > 0.3, "target {k}: λ stayed at {last}");
        let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(saved.contains(&format!("target_l0 = {k:?}")), "{saved}");
    }
    // The controller's state, the annealed target's start included, is in the checkpoint: a
    // crashed run resumes to the same weights.
    let crashed = tmp.path().join("crashed");
    let (a, c) = (p(&acts), p(&crashed));
    let args = [
        "train",
        "--acts",
        &a,
        "--out",
        &c,
        "--d-sae",
        "96",
        "--tokens",
        "262144",
        "--batch",
        "256",
        "--lr",
        "3e-3",
        "--log-every",
        "16",
        "--eval-tokens",
        "8192",
        "--device",
        "cpu",
        "--l1-coefficient",
        "3",
        "--target-l0",
        "2",
        "--target-l0-from",
        "0.1",
        "--target-l0-anneal",
        "0.6",
        "--checkpoint-every",
        "51200",
    ];
    let r = common::unravel(&args, &[("UNRAVEL_CRASH_AFTER_STEP", "500")]);
    assert_ne!(r.code, 0, "the run should have crashed");
    ok(&["train", "--resume", &c]);
    let weights = |d: &std::path::Path| std::fs::read(d.join("sae_weights.safetensors")).unwrap();
    assert!(
        weights(&crashed) == weights(&tmp.path().join("t2")),
        "resumed weights differ"
    );
}
