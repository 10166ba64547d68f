//! End-to-end tests of `unravel audit` (run as a user would): planted polysemantic neurons found
//! with precision and recall ≥ 0.95, ≈0 found under shuffled labels, an SAE's features audited
//! beside the neurons, concepts on real GPT-2 tokens, the report files, bad input.

mod common;

use std::path::Path;

use common::{json, ok, p, unravel};

/// `unravel synth --neurons` with extra flags.
fn planted_neurons(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "synth",
        "--neurons",
        "96",
        "--tokens",
        "40000",
        "--seed",
        "5",
        "--shard-tokens",
        "10000",
    ];
    args.extend_from_slice(extra);
    let out = p(dir);
    args.extend(["--out", &out]);
    ok(&args);
}

#[test]
fn planted_polysemantic_neurons_are_found_with_their_concepts() {
    let tmp = tempfile::tempdir().unwrap();
    // Harder than the defaults: more noise, misses, spurious firings.
    let acts = tmp.path().join("neurons");
    planted_neurons(
        &acts,
        &["--noise", "0.2", "--miss", "0.2", "--spurious", "0.03"],
    );
    let truth = json(&acts.join("__unravel__/truth/neurons.json"));
    let planted_poly = truth["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["class"] == "polysemantic")
        .count();
    assert_eq!(planted_poly, 29); // round(0.3 × 96)
    let audit = tmp.path().join("audit");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--cards",
        "10",
        "--out",
        &p(&audit),
    ]);
    let r = ok(&[
        "verify",
        "--truth",
        &p(&acts),
        "--audit",
        &p(&audit),
        "--min-precision",
        "0.95",
        "--min-recall",
        "0.95",
        "--min-concept-f1",
        "0.95",
    ]);
    assert!(
        r.stdout.contains("precision") && r.stdout.contains("PASS"),
        "{}",
        r.stdout
    );
    let v = json(&audit.join("verify.json"));
    for k in ["polysemantic", "concepts"] {
        for m in ["precision", "recall"] {
            let x = v[k][m].as_f64().unwrap();
            assert!(x >= 0.95, "{k} {m} = {x}: {v}");
        }
    }
    assert_eq!(v["polysemantic"]["actual"].as_u64(), Some(29));
    // The report: 16 label concepts, one card per requested unit, a row per unit × concept.
    let a = json(&audit.join("audit.json"));
    assert_eq!(a["concepts"].as_array().unwrap().len(), 16);
    assert_eq!(a["tokens"].as_u64(), Some(40000));
    let side = &a["sides"][0];
    assert_eq!(side["kind"], "neurons");
    assert_eq!(side["cards"].as_array().unwrap().len(), 10);
    assert_eq!(side["cards"][0]["class"], "polysemantic");
    let summary = &side["summary"];
    let dead = summary["dead"].as_u64().unwrap();
    assert_eq!(dead, 5); // round(0.05 × 96): dead neurons never fire
    let csv = std::fs::read_to_string(audit.join("scores.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 96 * 16);
    let html = std::fs::read_to_string(audit.join("report.html")).unwrap();
    assert_eq!(html.matches("class=\"card\"").count(), 10);
    assert!(audit.join("rates.svg").is_file());

    // Failing thresholds fail the command (exit ≠ 0) with the table: an audit of shuffled
    // labels finds none of the planted neurons.
    let shuffled = tmp.path().join("shuffled");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--shuffle-labels",
        "7",
        "--out",
        &p(&shuffled),
    ]);
    let r = unravel(
        &[
            "verify",
            "--truth",
            &p(&acts),
            "--audit",
            &p(&shuffled),
            "--min-recall",
            "0.5",
        ],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("FAIL") && r.stderr.contains("verify failed: recall"),
        "{}",
        r.stderr
    );
}

#[test]
fn shuffled_labels_give_no_polysemantic_units() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("neurons");
    planted_neurons(&acts, &[]);
    let audit = tmp.path().join("audit");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--shuffle-labels",
        "1",
        "--out",
        &p(&audit),
    ]);
    let s = &json(&audit.join("audit.json"))["sides"][0]["summary"];
    assert_eq!(s["polysemantic"].as_u64(), Some(0), "{s}");
    assert_eq!(s["monosemantic"].as_u64(), Some(0), "{s}");
    // All four scores agree on random labels: AUROC stays near 0.5, selectivity near 0.
    let csv = std::fs::read_to_string(audit.join("scores.csv")).unwrap();
    let mut worst_auroc = 0f64;
    for line in csv.lines().skip(1).filter(|l| !l.ends_with(",dead")) {
        let f: Vec<&str> = line.split(',').collect();
        worst_auroc = worst_auroc.max((f[4].parse::<f64>().unwrap() - 0.5).abs());
    }
    assert!(worst_auroc < 0.1, "AUROC off 0.5 by {worst_auroc}");
}

/// Distractors (planted neurons whose mean on 2–3 concepts is lifted by rare huge firings, with
/// AUROC below 0.5) pass the old mean-only rule — selectivity, support and z — on their outlier
/// concepts, so the old audit called them polysemantic; the rank tests reject every one of those
/// concepts (reason `auroc`) and no distractor is flagged, while the planted polysemantic neurons
/// are still found.
#[test]
fn distractors_fail_the_rank_tests_that_the_mean_alone_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("neurons");
    planted_neurons(&acts, &["--distractor", "0.2"]);
    let truth = json(&acts.join("__unravel__/truth/neurons.json"));
    let neurons = truth["neurons"].as_array().unwrap();
    let distractors: Vec<(u64, Vec<String>)> = neurons
        .iter()
        .filter(|n| n["class"] == "distractor")
        .map(|n| {
            assert_eq!(n["concepts"].as_array().unwrap().len(), 0, "{n}");
            let outliers = n["outlier_concepts"].as_array().unwrap();
            assert!((2..=3).contains(&outliers.len()), "{n}");
            let names = outliers.iter().map(|c| c.as_str().unwrap().to_string());
            (n["unit"].as_u64().unwrap(), names.collect())
        })
        .collect();
    assert_eq!(distractors.len(), 19); // round(0.2 × 96)
    let audit = tmp.path().join("audit");
    ok(&["audit", "--acts", &p(&acts), "--out", &p(&audit)]);
    ok(&[
        "verify",
        "--truth",
        &p(&acts),
        "--audit",
        &p(&audit),
        "--min-precision",
        "0.95",
        "--min-recall",
        "0.95",
    ]);
    let v = json(&audit.join("verify.json"));
    assert_eq!(v["distractors"].as_u64(), Some(19), "{v}");
    assert_eq!(v["distractors_flagged"].as_u64(), Some(0), "{v}");
    assert_eq!(v["distractor_concepts_passed"].as_u64(), Some(0), "{v}");
    assert_eq!(v["polysemantic"]["actual"].as_u64(), Some(29));

    // Every distractor × outlier concept row of scores.csv: the old rule (score ≥ 0.3, support
    // ≥ 10, z ≥ 5) passes it, AUROC is below 0.5, and the reason names the AUROC test alone.
    let csv = std::fs::read_to_string(audit.join("scores.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "kind",
            "unit",
            "concept",
            "selectivity",
            "auroc",
            "topk",
            "iou",
            "support",
            "z",
            "passes",
            "reason",
            "class"
        ]
    );
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let mut old_rule_flags = 0;
    let (mut aurocs, mut selectivities) = (vec![], vec![]);
    for (unit, outliers) in &distractors {
        let mut old_passing = 0;
        for c in outliers {
            let f = rows
                .iter()
                .find(|f| f[1] == unit.to_string() && f[2] == c)
                .unwrap();
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            let old_pass = num(3) >= 0.3 && num(7) >= 10.0 && num(8) >= 5.0;
            old_passing += old_pass as usize;
            assert!(num(4) < 0.5, "unit {unit} {c}: auroc {}", num(4));
            assert_eq!((f[9], f[10]), ("0", "auroc"), "unit {unit} {c}: {f:?}");
            aurocs.push(num(4));
            selectivities.push(num(3));
        }
        old_rule_flags += (old_passing >= 2) as usize;
        assert_eq!(f_class(&rows, *unit), "unexplained");
    }
    // Outlier concepts of distinct pairs, no co-occurrence: the old rule called all of them
    // polysemantic.
    assert_eq!(old_rule_flags, 19);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // Planted: AUROC ≈ 0.03 + 0.97 × (½·½ + ½·¼) ≈ 0.39 with noise making half the baseline
    // tokens > 0; selectivity ≈ 0.8.
    assert!((mean(&aurocs) - 0.39).abs() < 0.05, "{aurocs:?}");
    assert!(mean(&selectivities) > 0.6, "{selectivities:?}");
    // The same audit with the rank tests off (the mean-only rule of audit.json v1): every
    // distractor is called polysemantic, and precision falls to 29 / (29 + 19).
    let old = tmp.path().join("old");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--min-auroc",
        "0",
        "--topk-alpha",
        "0",
        "--out",
        &p(&old),
    ]);
    ok(&["verify", "--truth", &p(&acts), "--audit", &p(&old)]);
    let v = json(&old.join("verify.json"));
    assert_eq!(v["distractors_flagged"].as_u64(), Some(19), "{v}");
    let precision = v["polysemantic"]["precision"].as_f64().unwrap();
    assert!((precision - 29.0 / 48.0).abs() < 0.03, "{v}");
    // The decision's reason is in audit.json too.
    let a = json(&audit.join("audit.json"));
    assert_eq!(a["min_auroc"].as_f64(), Some(0.55));
    assert_eq!(a["topk_alpha"].as_f64(), Some(0.01));
    assert_eq!(a["min_topk_lift"].as_f64(), Some(0.0));
    let (unit, outliers) = &distractors[0];
    let u = &a["sides"][0]["unit_results"][*unit as usize];
    let rejected = u["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), outliers.len(), "{u}");
    for r in rejected {
        assert_eq!(r["failed"], serde_json::json!(["auroc"]), "{u}");
    }
}

/// The class of `unit` in scores.csv rows.
fn f_class<'a>(rows: &[Vec<&'a str>], unit: u64) -> &'a str {
    rows.iter().find(|f| f[1] == unit.to_string()).unwrap()[11]
}

/// An SAELens folder whose features are exactly the ReLU of the hook's dimensions.
fn write_identity_sae(dir: &Path, d: usize, hook: &str) {
    use candle_core::{Device, Tensor};
    std::fs::create_dir_all(dir).unwrap();
    let mut eye = vec![0f32; d * d];
    for i in 0..d {
        eye[i * d + i] = 1.0;
    }
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu).unwrap();
    let tensors = [
        ("W_enc", t(&eye, &[d, d])),
        ("b_enc", t(&vec![0.0; d], &[d])),
        ("W_dec", t(&eye, &[d, d])),
        ("b_dec", t(&vec![0.0; d], &[d])),
    ];
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (*k, v)), None).unwrap();
    std::fs::write(dir.join("sae_weights.safetensors"), bytes).unwrap();
    let cfg = serde_json::json!({"architecture": "standard", "d_in": d, "d_sae": d, "dtype": "float32",
        "apply_b_dec_to_input": false, "normalize_activations": "none",
        "metadata": {"hook_name": hook, "sae_lens_version": "6.0.0"}});
    std::fs::write(dir.join("cfg.json"), cfg.to_string()).unwrap();
}

#[test]
fn sae_features_are_audited_beside_the_neurons() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("neurons");
    planted_neurons(&acts, &[]);
    // Planted neurons are ≥ 0, so the identity SAE's features equal them: same classes, same scores.
    let sae = tmp.path().join("sae");
    write_identity_sae(&sae, 96, "neurons");
    let audit = tmp.path().join("audit");
    let r = ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--sae",
        &p(&sae),
        "--out",
        &p(&audit),
    ]);
    assert!(
        r.stdout.contains("features") && r.stdout.contains("neurons"),
        "{}",
        r.stdout
    );
    let a = json(&audit.join("audit.json"));
    let (n, f) = (&a["sides"][0], &a["sides"][1]);
    assert_eq!(
        (n["kind"].as_str(), f["kind"].as_str()),
        (Some("neurons"), Some("features"))
    );
    assert_eq!(n["summary"], f["summary"]);
    for (x, y) in n["unit_results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(f["unit_results"].as_array().unwrap())
    {
        assert_eq!(x["class"], y["class"]);
        assert_eq!(x["concepts"], y["concepts"]);
    }
    // --no-neurons: features only.
    let only = tmp.path().join("only");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--sae",
        &p(&sae),
        "--no-neurons",
        "--out",
        &p(&only),
    ]);
    let a = json(&only.join("audit.json"));
    assert_eq!(a["sides"].as_array().unwrap().len(), 1);
    assert_eq!(a["sides"][0]["kind"], "features");
}

#[test]
fn concepts_on_real_gpt2_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let acts = tmp.path().join("acts");
    ok(&[
        "extract",
        "--model",
        &format!("{root}/tests/fixtures/tiny-gpt2"),
        "--corpus",
        &format!("{root}/data/sentences.txt"),
        "--hooks",
        "blocks.1.mlp.hook_post",
        "--ctx",
        "16",
        "--store-dtype",
        "f32",
        "--out",
        &p(&acts),
        "--device",
        "cpu",
    ]);
    let audit = tmp.path().join("audit");
    let config = format!("{root}/configs/concepts.toml");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--concepts",
        &config,
        "--min-support",
        "2",
        "--out",
        &p(&audit),
    ]);
    let a = json(&audit.join("audit.json"));
    let count = |name: &str| {
        a["concepts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no concept {name}"))["tokens"]
            .as_u64()
            .unwrap()
    };
    // data/sentences.txt has the colours "red" and "blue" and the animal "cat", once each; the
    // tiny tokenizer splits them into pieces, and every piece carries its word's concept.
    let tok =
        tokenizers::Tokenizer::from_file(format!("{root}/tests/fixtures/tiny-gpt2/tokenizer.json"))
            .unwrap();
    let pieces = |w: &str| tok.encode(w, false).unwrap().get_ids().len() as u64;
    assert!(pieces(" red") > 1);
    assert_eq!(count("colour"), pieces(" red") + pieces(" blue"));
    assert_eq!(count("animal"), pieces(" cat"));
    // The year regex covers every piece of " 1969".
    assert_eq!(count("year"), pieces(" 1969"));
    assert!(count("word_start") > count("capitalized"));
    assert_eq!(a["sides"][0]["units"].as_u64(), Some(128));
    assert_eq!(a["sides"][0]["hook"], "blocks.1.mlp.hook_post");
    // Taggers list, then bad input: one line, non-zero exit, naming the flag.
    let r = ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--tagger",
        "list",
        "--out",
        &p(&audit),
    ]);
    assert_eq!(r.stdout.lines().count(), 11);
    for (args, needle) in [
        (vec!["--tagger", "digits"], "unknown tagger `digits`"),
        (vec!["--score", "f1"], "--score f1"),
        (
            vec!["--regex", "broken"],
            "--regex broken: expected NAME=PATTERN",
        ),
        (vec!["--regex", "x=("], "regex concept `x`: bad pattern"),
        (
            vec!["--hook", "blocks.9.hook_resid_post"],
            "blocks.9.hook_resid_post",
        ),
        (
            vec!["--label-column", "label.topic"],
            "label column `label.topic` is not in the dataset",
        ),
        (
            vec!["--lexicon", "/nonexistent/lex.toml"],
            "/nonexistent/lex.toml",
        ),
        (vec!["--threshold", "2"], "--threshold 2"),
        (
            vec!["--min-auroc", "1.5"],
            "--min-auroc 1.5: must be in [0, 1]",
        ),
        (
            vec!["--min-topk-lift", "nan"],
            "--min-topk-lift NaN: must be a number >= 0",
        ),
        (
            vec!["--topk-alpha", "1"],
            "--topk-alpha 1: must be in [0, 1)",
        ),
    ] {
        let (acts_s, out) = (p(&acts), p(&tmp.path().join("bad")));
        let mut full = vec!["audit", "--acts", &acts_s];
        full.extend(args.iter().copied());
        full.extend(["--out", &out]);
        let r = unravel(&full, &[]);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
    }
}

/// `unravel analyze` on planted data whose answer is known: 8 features in 32 dims span 8
/// dimensions (effective rank ≤ 8), 512 features in 32 dims fill the space.
#[test]
fn analyze_finds_the_planted_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let low = tmp.path().join("low");
    ok(&[
        "synth",
        "--features",
        "8",
        "--dims",
        "32",
        "--density",
        "0.5",
        "--tokens",
        "8000",
        "--out",
        &p(&low),
    ]);
    let high = tmp.path().join("high");
    ok(&[
        "synth",
        "--features",
        "512",
        "--dims",
        "32",
        "--density",
        "0.1",
        "--tokens",
        "8000",
        "--out",
        &p(&high),
    ]);
    for (dir, lo, hi) in [(&low, 1, 8), (&high, 28, 32)] {
        let out = tmp.path().join(format!("an-{lo}"));
        let r = ok(&["analyze", "--acts", &p(dir), "--out", &p(&out)]);
        assert!(r.stdout.contains("eff.rank"), "{}", r.stdout);
        let a = json(&out.join("analysis.json"));
        let m = &a["hooks"][0]["metrics"];
        let rank = m["effective_rank"].as_u64().unwrap();
        assert!((lo..=hi).contains(&rank), "rank {rank} not in {lo}..={hi}");
        let pr = m["effective_dimensionality"].as_f64().unwrap();
        assert!(pr <= hi as f64 + 1e-6 && pr >= 1.0, "PR {pr}");
        assert_eq!(a["tokens"].as_u64(), Some(8000));
        assert!(
            out.join("spectrum-synthetic.svg").is_file() && out.join("pca-synthetic.svg").is_file()
        );
    }
    let r = unravel(
        &[
            "analyze",
            "--acts",
            &p(&low),
            "--hooks",
            "blocks.*",
            "--out",
            &p(&tmp.path().join("x")),
        ],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--hooks blocks.*: matches no hook"),
        "{}",
        r.stderr
    );
}

/// `analyze --weights`: Σσ² of every matrix equals its squared Frobenius norm (read here
/// independently from the safetensors file), and the spectrum is sorted.
#[test]
fn analyze_weights_spectra_keep_the_frobenius_norm() {
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/tests/fixtures/tiny-gpt2");
    let out = tmp.path().join("w");
    let r = ok(&["analyze", "--weights", &model, "--out", &p(&out)]);
    assert!(
        r.stdout.contains("transformer.h.1.mlp.c_fc.weight"),
        "{}",
        r.stdout
    );
    let a = json(&out.join("weights.json"));
    let bytes = std::fs::read(format!("{model}/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mats = a["matrices"].as_array().unwrap();
    assert_eq!(
        mats.len(),
        st.tensors()
            .iter()
            .filter(|(_, t)| t.shape().len() == 2)
            .count()
    );
    for m in mats {
        let t = st.tensor(m["name"].as_str().unwrap()).unwrap();
        let frob: f64 = t
            .data()
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .map(|v| v * v)
            .sum();
        let sv: Vec<f64> = m["singular_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let sum: f64 = sv.iter().map(|s| s * s).sum();
        assert!(
            (sum - frob).abs() < 1e-4 * frob,
            "{}: {sum} vs {frob}",
            m["name"]
        );
        assert!(sv.windows(2).all(|w| w[0] >= w[1]));
        let rank = m["effective_rank"].as_u64().unwrap() as usize;
        assert!(rank >= 1 && rank <= sv.len());
    }
}
