//! End-to-end `unravel train` / `unravel eval` on planted-feature datasets: recovery, exact
//! resume after a crash, the SAELens export, known-answer evaluation, and bad input.

mod common;

use std::path::Path;

use common::{json, ok, p, unravel};

use unravel::sae::checkpoint::load_saelens;
use unravel::store::{
    Bos, ContextBatch, CorpusInfo, DatasetWriter, HookInfo, Manifest, ModelInfo, StorageDtype,
    WriterOptions,
};
use unravel::synth::planted::{mmcs, PlantedSpec};
use unravel::synth::write_planted;

/// 48 planted features in 24 dims (2× superposition), ~2.4 active per token, 4 shards.
fn planted(dir: &Path, tokens: u64) -> unravel::synth::PlantedTruth {
    let mut spec = PlantedSpec::new(48, 24, 0.05, tokens, 7);
    spec.shard_tokens = (tokens / 4) as usize;
    write_planted(&spec, dir).unwrap()
}

/// `unravel train` flags for the planted datasets; `extra` pairs replace defaults of the same name.
fn train_args<'a>(acts: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--d-sae", "96"),
        ("--tokens", "131072"),
        ("--batch", "256"),
        ("--lr", "3e-3"),
        ("--l1-coefficient", "3"),
        ("--log-every", "16"),
        ("--eval-tokens", "8192"),
        ("--device", "cpu"),
    ];
    let mut a = vec!["train", "--acts", acts, "--out", out];
    for (k, v) in defaults {
        if !extra.contains(&k) {
            a.extend([k, v]);
        }
    }
    a.extend_from_slice(extra);
    a
}

#[test]
fn training_recovers_planted_features_and_exports_for_saelens() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    let truth = planted(&acts, 65536);
    let run = tmp.path().join("run");
    let r = ok(&train_args(&p(&acts), &p(&run), &[]));
    assert!(r.stdout.contains("final eval"), "{}", r.stdout);

    // Recovery of the ground truth (decoder directions of the export).
    let loaded = load_saelens(&run).unwrap();
    let (mmcs, recovered) = mmcs(&truth.directions, &loaded.sae.w_dec, 24, 0.9);
    // (Measured: MMCS 0.995, all 48 recovered at cos ≥ 0.9.)
    assert!(mmcs > 0.98, "MMCS {mmcs}");
    assert!(recovered > 0.95, "recovered {recovered}");

    // `unravel verify` reports the same recovery, with the Hungarian matching, and gates on MMCS.
    let r = ok(&[
        "verify",
        "--truth",
        &p(&acts),
        "--sae",
        &p(&run),
        "--min-mmcs",
        "0.98",
    ]);
    assert!(r.stdout.contains("MCC"), "{}", r.stdout);
    let v = json(&run.join("verify.json"));
    assert!(
        (v["mmcs"].as_f64().unwrap() - mmcs).abs() < 1e-4,
        "{} vs {mmcs}",
        v["mmcs"]
    );
    assert!(
        v["mcc"].as_f64().unwrap() > 0.9
            && v["mcc"].as_f64().unwrap() <= v["mmcs"].as_f64().unwrap() + 1e-9
    );
    assert_eq!(v["features"].as_array().unwrap().len(), 48);
    let svg = std::fs::read_to_string(run.join("verify.svg")).unwrap();
    assert_eq!(
        svg.matches("<circle").count(),
        48,
        "one point per planted feature"
    );
    let r = unravel(
        &[
            "verify",
            "--truth",
            &p(&acts),
            "--sae",
            &p(&run),
            "--min-mmcs",
            "0.99999",
            "--min-recovered",
            "0.9",
        ],
        &[],
    );
    assert!(
        r.code == 1 && r.stderr.contains("MMCS") && r.stderr.contains("wanted >= 0.99999"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("FAIL") && r.stdout.contains("PASS"),
        "{}",
        r.stdout
    );

    // Held-out evaluation: good reconstruction with few features.
    let eval = json(&run.join("eval.json"));
    let ev = eval["ev"].as_f64().unwrap();
    let l0 = eval["l0"].as_f64().unwrap();
    // 2.4 planted features are active per token; L1 shrinkage costs some variance.
    assert!(ev > 0.8, "EV {ev}");
    assert!(l0 > 2.0 && l0 < 5.0, "L0 {l0}");
    assert_eq!(eval["held_out"], true);

    // metrics.jsonl: one line per 16 steps (512 steps) plus the final evaluation.
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train: Vec<_> = lines.iter().filter(|l| l["kind"] == "train").collect();
    assert_eq!(train.len(), 512 / 16);
    let first = train[0]["mse"].as_f64().unwrap();
    let last = train.last().unwrap()["mse"].as_f64().unwrap();
    assert!(last < 0.3 * first, "mse {first} -> {last}");
    assert_eq!(lines.last().unwrap()["kind"], "eval");
    // λ warms up over 5% of 512 steps, LR decays over the last 20%.
    assert!(train[0]["l1_coefficient"].as_f64().unwrap() < 3.0);
    assert!(train.last().unwrap()["lr"].as_f64().unwrap() < 3e-3 * 0.1);

    // cfg.json in SAELens's layout.
    let cfg = json(&run.join("cfg.json"));
    assert_eq!(cfg["architecture"], "standard");
    assert_eq!(
        (cfg["d_in"].as_u64(), cfg["d_sae"].as_u64()),
        (Some(24), Some(96))
    );
    assert_eq!(cfg["apply_b_dec_to_input"], false);
    assert_eq!(cfg["metadata"]["hook_name"], "synthetic");
    assert!(run.join("sparsity.safetensors").is_file());

    // The folded export encodes raw inputs as the training-space SAE did.
    let check = candle_core::safetensors::load(
        run.join("export_check.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let x = check["x"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let f_ref = check["feature_acts"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let xh_ref = check["x_hat"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let f = loaded.sae.encode(&x);
    let xh = loaded.sae.decode(&f);
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst(&f, &f_ref) < 1e-4,
        "features differ by {}",
        worst(&f, &f_ref)
    );
    assert!(worst(&xh, &xh_ref) < 1e-4);

    // `unravel eval` on the same held-out shards gives the same numbers.
    let r = ok(&[
        "eval",
        "--sae",
        &p(&run),
        "--acts",
        &p(&acts),
        "--eval-tokens",
        "8192",
        "--device",
        "cpu",
    ]);
    assert!(r.stdout.contains("EV"), "{}", r.stdout);
    let e2 = json(&run.join("eval-report.json"));
    assert!(
        (e2["ev"].as_f64().unwrap() - ev).abs() < 1e-4,
        "{} vs {ev}",
        e2["ev"]
    );
    assert!((e2["l0"].as_f64().unwrap() - l0).abs() < 1e-3);
}

/// `--recipe gated` trains SAELens's gated architecture on the planted set: `unravel verify`
/// finds the planted directions in its decoder, and the export is a SAELens `gated` folder that
/// reads back to the SAE whose features `export_check.safetensors` holds.
#[test]
fn gated_recipe_recovers_planted_features_and_exports_a_gated_saelens_sae() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    let truth = planted(&acts, 65536);
    let run = tmp.path().join("run");
    let r = ok(&train_args(&p(&acts), &p(&run), &["--recipe", "gated"]));
    assert!(r.stdout.contains("final eval"), "{}", r.stdout);
    let cfg = json(&run.join("cfg.json"));
    assert_eq!(cfg["architecture"], "gated");
    assert_eq!(cfg["apply_b_dec_to_input"], true);
    let loaded = load_saelens(&run).unwrap();
    assert!(loaded.sae.is_gated());
    let (mmcs, recovered) = mmcs(&truth.directions, &loaded.sae.w_dec, 24, 0.9);
    // (Measured: MMCS 0.976, all 48 recovered at cos ≥ 0.9; april-2024 on the same: 0.995.)
    assert!(mmcs > 0.95, "MMCS {mmcs}");
    assert!(recovered > 0.9, "recovered {recovered}");
    ok(&[
        "verify",
        "--truth",
        &p(&acts),
        "--sae",
        &p(&run),
        "--min-mmcs",
        "0.95",
    ]);
    let v = json(&run.join("verify.json"));
    assert!((v["mmcs"].as_f64().unwrap() - mmcs).abs() < 1e-4);
    // The features written beside the export are the read-back SAE's.
    let bytes = std::fs::read(run.join("export_check.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let floats = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let f = loaded.sae.encode(&floats("x"));
    let want = floats("feature_acts");
    assert!(want.iter().any(|&v| v > 0.0));
    for (a, b) in f.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

fn weights(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("sae_weights.safetensors")).unwrap()
}

#[test]
fn a_crashed_run_resumes_to_bit_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 32768);
    for recipe in ["april-2024", "unit-norm", "gated"] {
        let whole = tmp.path().join(format!("whole-{recipe}"));
        let crashed = tmp.path().join(format!("crashed-{recipe}"));
        // 512 steps, checkpoints every 50 steps; unit-norm resamples dead features at 1/4, 1/2, 3/4.
        let extra = [
            "--recipe",
            recipe,
            "--checkpoint-every",
            "12800",
            "--eval-every",
            "40000",
        ];
        ok(&train_args(&p(&acts), &p(&whole), &extra));
        let r = unravel(
            &train_args(&p(&acts), &p(&crashed), &extra),
            &[("UNRAVEL_CRASH_AFTER_STEP", "230")],
        );
        assert_ne!(r.code, 0, "the run should have crashed");
        assert!(!crashed.join("sae_weights.safetensors").exists());
        let latest = std::fs::read_to_string(crashed.join("checkpoints/latest")).unwrap();
        assert_eq!(latest, "step-000000200");
        let r = ok(&["train", "--resume", &p(&crashed)]);
        assert!(r.stdout.contains("trained 512 steps"), "{}", r.stdout);
        assert!(
            weights(&whole) == weights(&crashed),
            "{recipe}: resumed weights differ"
        );
        // The metric lines after the checkpoint were rewritten, not duplicated.
        let a = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
        let b = std::fs::read_to_string(crashed.join("metrics.jsonl")).unwrap();
        let strip = |s: &str| -> Vec<serde_json::Value> {
            s.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("tokens_per_s");
                    v
                })
                .collect()
        };
        assert_eq!(strip(&a), strip(&b), "{recipe}: metrics differ");
    }
}

#[test]
fn unit_norm_recipe_keeps_unit_decoder_rows_and_centres_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 32768);
    let run = tmp.path().join("run");
    ok(&train_args(
        &p(&acts),
        &p(&run),
        &["--recipe", "unit-norm", "--tokens", "32768"],
    ));
    let cfg = json(&run.join("cfg.json"));
    assert_eq!(cfg["apply_b_dec_to_input"], true);
    // Resampling: start (--from) from an SAE whose second half of latents can never fire
    // (b_enc = −1000); the unit-norm recipe re-initialises them from badly reconstructed inputs.
    let (d, s) = (24, 96);
    let w: Vec<f32> = (0..d * s)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 200.0)
        .collect();
    let b_enc: Vec<f32> = (0..s)
        .map(|j| if j < s / 2 { 0.0 } else { -1000.0 })
        .collect();
    let init = tmp.path().join("init");
    write_saelens(&init, d, s, &w, &w, &b_enc, &vec![0.0; d]);
    let run2 = tmp.path().join("run2");
    let r = ok(&train_args(
        &p(&acts),
        &p(&run2),
        &[
            "--recipe",
            "unit-norm",
            "--tokens",
            "32768",
            "--dead-window",
            "4096",
            "--from",
            &p(&init),
        ],
    ));
    assert!(
        r.stdout.contains("resampled 48 dead features"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let e = json(&run2.join("eval.json"));
    assert!(
        e["dead_frac"].as_f64().unwrap() < 0.25,
        "dead after resampling: {}",
        e["dead_frac"]
    );
    let state = unravel::sae::checkpoint::load_checkpoint(&run).unwrap();
    for n in state.sae.decoder_norms() {
        assert!((n - 1.0).abs() < 1e-4, "decoder row norm {n}");
    }
}

/// The identity SAE in SAELens layout: f = [ReLU(x), ReLU(−x)], x̂ = f·[I; −I] = x exactly.
fn write_identity_saelens(dir: &Path, d: usize) {
    let s = 2 * d;
    let mut w_enc = vec![0f32; d * s];
    let mut w_dec = vec![0f32; s * d];
    for j in 0..d {
        w_enc[j * s + j] = 1.0;
        w_enc[j * s + d + j] = -1.0;
        w_dec[j * d + j] = 1.0;
        w_dec[(d + j) * d + j] = -1.0;
    }
    write_saelens(dir, d, s, &w_enc, &w_dec, &vec![0.0; s], &vec![0.0; d]);
}

/// Writes an SAELens folder by hand.
fn write_saelens(
    dir: &Path,
    d: usize,
    s: usize,
    w_enc: &[f32],
    w_dec: &[f32],
    b_enc: &[f32],
    b_dec: &[f32],
) {
    use candle_core::{Device, Tensor};
    std::fs::create_dir_all(dir).unwrap();
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu).unwrap();
    let tensors = [
        ("W_enc", t(w_enc, &[d, s])),
        ("b_enc", t(b_enc, &[s])),
        ("W_dec", t(w_dec, &[s, d])),
        ("b_dec", t(b_dec, &[d])),
    ];
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (*k, v)), None).unwrap();
    std::fs::write(dir.join("sae_weights.safetensors"), bytes).unwrap();
    let cfg = serde_json::json!({"architecture": "standard", "d_in": d, "d_sae": s, "dtype": "float32",
        "apply_b_dec_to_input": false, "normalize_activations": "none",
        "metadata": {"hook_name": "synthetic", "sae_lens_version": "6.0.0"}});
    std::fs::write(dir.join("cfg.json"), cfg.to_string()).unwrap();
}

#[test]
fn eval_gives_the_known_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 16384);
    let d = 24;
    // Identity SAE: f = [ReLU(x), ReLU(−x)], x̂ = f·[I; −I] = x exactly → FVU 0.
    let ident = tmp.path().join("identity");
    write_identity_saelens(&ident, d);
    let s = 2 * d;
    ok(&[
        "eval",
        "--sae",
        &p(&ident),
        "--acts",
        &p(&acts),
        "--shards",
        "all",
        "--device",
        "cpu",
    ]);
    let e = json(&ident.join("eval-report.json"));
    assert!(
        e["fvu"].as_f64().unwrap() < 1e-10,
        "identity FVU {}",
        e["fvu"]
    );
    assert_eq!(e["tokens"].as_u64(), Some(16384));
    // One of each ±pair fires per non-zero coordinate: L0 = d on tokens with any active planted
    // feature, 0 on the ~0.95^48 = 8.5% of tokens with none.
    let l0 = e["l0"].as_f64().unwrap();
    assert!(
        l0 > 0.85 * d as f64 && l0 < 0.95 * d as f64,
        "identity L0 {l0}"
    );

    // A zero SAE whose b_dec is the data mean reconstructs the mean: FVU = 1.
    let ds = unravel::store::Dataset::open(&acts).unwrap();
    let mean: Vec<f32> = ds.manifest().stats["synthetic"]
        .mean
        .iter()
        .map(|&v| v as f32)
        .collect();
    let zero = tmp.path().join("zero");
    write_saelens(
        &zero,
        d,
        s,
        &vec![0.0; d * s],
        &vec![0.0; s * d],
        &vec![0.0; s],
        &mean,
    );
    ok(&[
        "eval",
        "--sae",
        &p(&zero),
        "--acts",
        &p(&acts),
        "--shards",
        "all",
        "--device",
        "cpu",
    ]);
    let e = json(&zero.join("eval-report.json"));
    assert!(
        (e["fvu"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "mean-only FVU {}",
        e["fvu"]
    );
    assert_eq!(e["dead_frac"].as_f64(), Some(1.0));
}

/// A tiny dataset (3 shards of 64 rows, hook `h`, d = 4) whose second shard is then rewritten
/// with a NaN — as another tool could leave it (our writer refuses non-finite values).
fn dataset_with_nan(dir: &Path) {
    use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
    use std::sync::Arc;
    let hook = HookInfo {
        name: "h".into(),
        d: 4,
        dtype: StorageDtype::F32,
    };
    let m = Manifest::new(
        ModelInfo {
            id: "test".into(),
            revision: None,
            arch: "synthetic".into(),
            config_sha256: String::new(),
            weights_sha256: None,
            random_weights: true,
            seed: None,
        },
        String::new(),
        vec![hook],
        8,
        Bos::None,
        CorpusInfo {
            sources: vec![],
            sha256: String::new(),
            format: "synthetic".into(),
            text_field: None,
            documents: 0,
            empty_documents: 0,
        },
    );
    let mut w = DatasetWriter::create(
        dir,
        m,
        WriterOptions {
            shard_rows: 64,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for c in 0..24u64 {
        let v: Vec<f32> = (0..32)
            .map(|i| ((c as usize * 31 + i * 7) % 13) as f32 / 13.0)
            .collect();
        w.write_batch(&ContextBatch {
            context_ids: &[c; 8],
            positions: &[0, 1, 2, 3, 4, 5, 6, 7],
            token_ids: &[0; 8],
            tokens: &vec![String::new(); 8],
            special: &[false; 8],
            labels: &[],
            hooks: &[&v],
        })
        .unwrap();
    }
    w.finish().unwrap();
    let path = dir.join("shard-00001.parquet");
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let col = schema.index_of("h").unwrap();
    let poisoned: Vec<RecordBatch> = batches
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let list = b
                .column(col)
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .unwrap();
            let mut vals: Vec<f32> = list
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .unwrap()
                .values()
                .to_vec();
            if k == 0 {
                vals[5] = f32::NAN;
            }
            let arrow_schema::DataType::FixedSizeList(field, size) = list.data_type().clone()
            else {
                panic!()
            };
            let new =
                FixedSizeListArray::new(field, size, Arc::new(Float32Array::from(vals)), None);
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            cols[col] = Arc::new(new);
            RecordBatch::try_new(schema.clone(), cols).unwrap()
        })
        .collect();
    let out = std::fs::File::create(&path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), None).unwrap();
    for b in &poisoned {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    common::rerecord_shard(dir, "shard-00001.parquet");
}

#[test]
fn bad_input_gives_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let nan = tmp.path().join("nan");
    dataset_with_nan(&nan);
    let base = |out: &str| -> Vec<String> {
        [
            "train",
            "--acts",
            &p(&nan),
            "--out",
            out,
            "--d-sae",
            "8",
            "--tokens",
            "4096",
            "--batch",
            "64",
            "--eval-shards",
            "0",
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let out1 = p(&tmp.path().join("r1"));
    let args: Vec<String> = base(&out1);
    let r = unravel(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>(), &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("NaN/Inf")
            && r.stderr.contains("shard-00001.parquet")
            && r.stderr.contains("--skip-nonfinite"),
        "{}",
        r.stderr
    );
    // With --skip-nonfinite the rows are dropped and training finishes (on 191 rows of 8
    // patterns, EV 0.46 takes a high lr and a low λ; the defaults end below EV 0: diverged).
    let out2 = p(&tmp.path().join("r2"));
    let mut args = base(&out2);
    args.extend(["--skip-nonfinite", "--lr", "1e-2", "--l1-coefficient", "1"].map(String::from));
    let r = unravel(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>(), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Divergence: an absurd learning rate stops the run with a clear message.
    let acts = tmp.path().join("acts");
    planted(&acts, 8192);
    let div = p(&tmp.path().join("div"));
    let r = unravel(
        &train_args(&p(&acts), &div, &["--lr", "1e30", "--tokens", "8192"]),
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("diverged") && r.stderr.contains("lower --lr"),
        "{}",
        r.stderr
    );

    // Unknown hook, missing dataset, an existing run without --resume, a bad recipe.
    let r = unravel(
        &train_args(&p(&acts), &div, &["--hook", "blocks.0.hook_x"]),
        &[],
    );
    assert!(
        r.code != 0 && r.stderr.contains("blocks.0.hook_x") && r.stderr.contains("synthetic"),
        "{}",
        r.stderr
    );
    let r = unravel(&train_args("/nonexistent/acts", &div, &[]), &[]);
    assert!(
        r.code != 0 && r.stderr.contains("/nonexistent/acts"),
        "{}",
        r.stderr
    );
    let run = p(&tmp.path().join("run"));
    ok(&train_args(&p(&acts), &run, &["--tokens", "4096"]));
    let r = unravel(&train_args(&p(&acts), &run, &["--tokens", "4096"]), &[]);
    assert!(r.code != 0 && r.stderr.contains("--resume"), "{}", r.stderr);
    let r = unravel(&train_args(&p(&acts), &div, &["--recipe", "topk"]), &[]);
    assert!(
        r.code != 0 && r.stderr.contains("april-2024"),
        "{}",
        r.stderr
    );
    // Resuming with a different setting is refused with the difference.
    let r = unravel(&["train", "--resume", &run, "--lr", "0.5"], &[]);
    assert!(r.code != 0 && r.stderr.contains("lr"), "{}", r.stderr);
    // Resuming over a dataset that changed since the run started is refused.
    let manifest = acts.join("__unravel__/manifest.json");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push('\n');
    std::fs::write(&manifest, text).unwrap();
    let r = unravel(&["train", "--resume", &run], &[]);
    assert!(
        r.code != 0 && r.stderr.contains("changed since this run started"),
        "{}",
        r.stderr
    );

    // eval: an SAE for another width.
    let wide = tmp.path().join("wide");
    write_saelens(&wide, 5, 2, &[0.0; 10], &[0.0; 10], &[0.0; 2], &[0.0; 5]);
    let r = unravel(
        &[
            "eval",
            "--sae",
            &p(&wide),
            "--acts",
            &p(&acts),
            "--device",
            "cpu",
        ],
        &[],
    );
    assert!(r.code != 0 && r.stderr.contains("d_in = 5"), "{}", r.stderr);
    let r = unravel(
        &["eval", "--sae", "/nonexistent/sae", "--acts", &p(&acts)],
        &[],
    );
    assert!(r.code != 0 && r.stderr.contains("cfg.json"), "{}", r.stderr);
}

#[test]
fn downstream_eval_splices_the_sae_into_gpt2() {
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/tests/fixtures/tiny-gpt2");
    let acts = tmp.path().join("acts");
    ok(&[
        "extract",
        "--model",
        &model,
        "--corpus",
        &format!("{root}/data/sentences.txt"),
        "--hooks",
        "blocks.1.hook_resid_post",
        "--ctx",
        "16",
        "--shard-tokens",
        "64",
        "--store-dtype",
        "f32",
        "--out",
        &p(&acts),
        "--device",
        "cpu",
    ]);
    // The identity SAE changes nothing: CE with SAE = clean, KL 0, everything recovered.
    let d = 32;
    let ident = tmp.path().join("identity");
    write_identity_saelens(&ident, d);
    let r = ok(&[
        "eval",
        "--sae",
        &p(&ident),
        "--acts",
        &p(&acts),
        "--hook",
        "blocks.1.hook_resid_post",
        "--model",
        &model,
        "--device",
        "cpu",
    ]);
    assert!(r.stdout.contains("CE recovered"), "{}", r.stdout);
    let e = json(&ident.join("eval-report.json"));
    let ds = &e["downstream"];
    let f = |k: &str| ds[k].as_f64().unwrap();
    assert_eq!(ds["contexts"].as_u64(), Some(13));
    assert!((f("ce_sae") - f("ce_clean")).abs() < 1e-5, "{ds}");
    assert!(f("kl_sae").abs() < 1e-6, "{ds}");
    assert!(f("ce_zero") > f("ce_clean") && f("kl_zero") > 0.1, "{ds}");
    assert!(
        (f("ce_recovered") - 1.0).abs() < 1e-3 && (f("kl_score") - 1.0).abs() < 1e-5,
        "{ds}"
    );
    // The same identity as a gated SAE (r_mag = 0, b_mag = b_gate: f = ReLU(π + b)) splices
    // through the gated encode and changes nothing either.
    let mut gated = load_saelens(&ident).unwrap().sae;
    gated.r_mag = vec![0.0; gated.d_sae];
    gated.b_mag = gated.b_enc.clone();
    let gated_dir = tmp.path().join("identity-gated");
    std::fs::create_dir_all(&gated_dir).unwrap();
    let meta = unravel::sae::checkpoint::ExportMeta {
        model_name: "tiny-gpt2".into(),
        hook_name: "blocks.1.hook_resid_post".into(),
        context_size: 16,
        prepend_bos: true,
        dataset_path: p(&acts),
    };
    let densities = vec![0.5; gated.d_sae];
    unravel::sae::checkpoint::export_saelens(&gated_dir, &gated, &densities, &meta).unwrap();
    ok(&[
        "eval",
        "--sae",
        &p(&gated_dir),
        "--acts",
        &p(&acts),
        "--model",
        &model,
        "--device",
        "cpu",
    ]);
    let g = json(&gated_dir.join("eval-report.json"));
    let gd = &g["downstream"];
    assert!(
        (gd["ce_sae"].as_f64().unwrap() - f("ce_clean")).abs() < 1e-5,
        "{gd}"
    );
    assert!(gd["kl_sae"].as_f64().unwrap().abs() < 1e-6, "{gd}");
    // DistilBERT has no LM head: a clear error.
    let r = unravel(
        &[
            "eval",
            "--sae",
            &p(&ident),
            "--acts",
            &p(&acts),
            "--hook",
            "blocks.1.hook_resid_post",
            "--model",
            &format!("{root}/tests/fixtures/tiny-distilbert"),
            "--device",
            "cpu",
        ],
        &[],
    );
    assert!(r.code != 0 && r.stderr.contains("GPT-2"), "{}", r.stderr);
}

#[test]
fn shipped_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Toy-model, concept and run configs are checked by their own tests (tests/toy.rs,
        // tests/audit.rs, tests/run.rs); run configs have a table per stage.
        let is_run_config = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .is_some_and(|t| t.values().any(|v| v.is_table() || v.is_array()));
        if name.ends_with(".toml")
            && !name.starts_with("toy-")
            && name != "concepts.toml"
            && !is_run_config
        {
            let c = unravel::sae::PartialConfig::from_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                c.recipe.is_some() || c.acts.is_some() || c.hook.is_some() || c.synth.is_some(),
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 3, "configs/*.toml: found {n}");
}

#[test]
fn eval_and_from_read_a_saelens_sae_from_the_hub_cache() {
    // A hub cache laid out as hf-hub writes it, used offline: OWNER/REPO/SUBFOLDER.
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 16384);
    let home = tmp.path().join("hf");
    let repo = home.join("hub/models--someone--planted-saes");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let folder = repo
        .join("snapshots")
        .join(commit)
        .join("blocks.0.synthetic");
    let (d, s) = (24, 96);
    let w: Vec<f32> = (0..d * s)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
        .collect();
    write_saelens(&folder, d, s, &w, &w, &vec![0.01; s], &vec![0.0; d]);
    let env = [("HF_HOME", p(&home)), ("HF_HUB_OFFLINE", "1".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = unravel(
        &[
            "eval",
            "--sae",
            "someone/planted-saes/blocks.0.synthetic",
            "--acts",
            &p(&acts),
            "--shards",
            "all",
            "--device",
            "cpu",
            "--json",
            &p(&tmp.path().join("e.json")),
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e = json(&tmp.path().join("e.json"));
    assert_eq!(e["tokens"].as_u64(), Some(16384));
    // Training can start from it (the same 24 → 96 shape).
    let run = tmp.path().join("run");
    let (acts_s, run_s) = (p(&acts), p(&run));
    let mut args = train_args(&acts_s, &run_s, &["--tokens", "4096"]);
    args.extend(["--from", "someone/planted-saes/blocks.0.synthetic"]);
    let r = unravel(&args, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A sub-folder the repo lacks: a clear error naming the file and the cache.
    let r = unravel(
        &[
            "eval",
            "--sae",
            "someone/planted-saes/blocks.9.x",
            "--acts",
            &p(&acts),
        ],
        &env,
    );
    assert!(
        r.code != 0 && r.stderr.contains("blocks.9.x/cfg.json"),
        "{}",
        r.stderr
    );
}

#[test]
fn ctrl_c_checkpoints_and_the_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 16384);
    let whole = tmp.path().join("whole");
    let stopped = tmp.path().join("stopped");
    // Long enough (16k steps of 64) that the signal arrives mid-run.
    let extra = [
        "--tokens",
        "1048576",
        "--batch",
        "64",
        "--log-every",
        "100",
        "--checkpoint-every",
        "0",
    ];
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_unravel"))
        .args(train_args(&p(&acts), &p(&stopped), &extra))
        .env("RAYON_NUM_THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = stopped.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while !metrics.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Safety: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(stopped.join("checkpoints/latest").is_file());
    assert!(!stopped.join("sae_weights.safetensors").exists());
    // Reading it as an SAE before it finishes says so, and how to go on: one line, exit 1.
    let r = unravel(&["eval", "--sae", &p(&stopped), "--acts", &p(&acts)], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    for part in [
        "training has not finished",
        "step-",
        "unravel train --resume",
    ] {
        assert!(r.stderr.contains(part), "{part}: {}", r.stderr);
    }
    ok(&["train", "--resume", &p(&stopped)]);
    ok(&train_args(&p(&acts), &p(&whole), &extra));
    assert!(
        weights(&whole) == weights(&stopped),
        "resumed weights differ"
    );
}

#[test]
fn features_planted_in_real_activations_are_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/tests/fixtures/tiny-gpt2");
    // ~40k tokens of word salad from the shipped sentences (deterministic).
    let words: Vec<String> = std::fs::read_to_string(format!("{root}/data/sentences.txt"))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut text = String::new();
    let mut k = 7usize;
    for _ in 0..1000 {
        for _ in 0..12 {
            k = (k * 1103515245 + 12345) % 2147483648;
            text.push_str(&words[k % words.len()]);
            text.push(' ');
        }
        text.push_str(".\n");
    }
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(&corpus, text).unwrap();
    let acts = tmp.path().join("acts");
    ok(&[
        "extract",
        "--model",
        &model,
        "--corpus",
        &p(&corpus),
        "--hooks",
        "blocks.1.hook_resid_post",
        "--ctx",
        "64",
        "--shard-tokens",
        "8192",
        "--store-dtype",
        "f32",
        "--out",
        &p(&acts),
        "--device",
        "cpu",
    ]);
    let planted = tmp.path().join("planted");
    let r = ok(&[
        "plant",
        "--acts",
        &p(&acts),
        "--features",
        "8",
        "--density",
        "0.03",
        "--magnitude",
        "1.0",
        "--seed",
        "3",
        "--out",
        &p(&planted),
    ]);
    assert!(r.stdout.contains("planted 8 features"), "{}", r.stdout);
    // Everything but the planted hook's non-special rows is a copy.
    let (a, b) = (
        unravel::store::Dataset::open(&acts).unwrap(),
        unravel::store::Dataset::open(&planted).unwrap(),
    );
    assert_eq!(a.manifest().totals, b.manifest().totals);
    assert_eq!(a.manifest().model, b.manifest().model);
    let args = |acts: &Path, out: &Path| -> Vec<String> {
        [
            "train",
            "--acts",
            &p(acts),
            "--out",
            &p(out),
            "--d-sae",
            "128",
            "--tokens",
            "200000",
            "--batch",
            "512",
            "--lr",
            "3e-3",
            "--l1-coefficient",
            "2",
            "--eval-tokens",
            "4096",
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = tmp.path().join("run");
    let a1 = args(&planted, &run);
    ok(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    // (Measured at 400k tokens: MMCS 0.9996, 8/8 recovered; without planting, the same SAE's best
    // matches to these directions average 0.39, 0/8 recovered.)
    let r = ok(&[
        "verify",
        "--truth",
        &p(&planted),
        "--sae",
        &p(&run),
        "--min-recovered",
        "0.85",
        "--min-mmcs",
        "0.9",
    ]);
    assert!(r.stdout.contains("PASS"), "{}", r.stdout);
    // Control: an SAE trained without the planted features does not "find" them.
    let control = tmp.path().join("control");
    let a2 = args(&acts, &control);
    ok(&a2.iter().map(String::as_str).collect::<Vec<_>>());
    let r = unravel(
        &[
            "verify",
            "--truth",
            &p(&planted),
            "--sae",
            &p(&control),
            "--min-recovered",
            "0.5",
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
}

#[test]
fn synth_truth_reconstructs_the_data_exactly() {
    // With --save-activations the truth holds every token's feature activations: directions ×
    // activations must give back the stored rows (no noise).
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let r = ok(&[
        "synth",
        "--features",
        "40",
        "--dims",
        "16",
        "--density",
        "0.1",
        "--tokens",
        "2048",
        "--power-law",
        "0.97",
        "--group-size",
        "2",
        "--magnitude",
        "half-normal",
        "--clusters",
        "5",
        "--save-activations",
        "--seed",
        "4",
        "--out",
        &p(&out),
    ]);
    assert!(r.stdout.contains("planted 40 features"), "{}", r.stdout);
    let t = candle_core::safetensors::load(
        out.join("__unravel__/truth/ground_truth.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let dirs = t["directions"].to_vec2::<f32>().unwrap();
    let tok = t["act_token"].to_vec1::<i64>().unwrap();
    let feat = t["act_feature"].to_vec1::<i64>().unwrap();
    let val = t["act_value"].to_vec1::<f32>().unwrap();
    // Co-firing pairs: features 2k and 2k+1 are active on exactly the same tokens.
    let mut on: std::collections::BTreeSet<(i64, i64)> = Default::default();
    for (&t_, &f) in tok.iter().zip(&feat) {
        on.insert((f, t_));
    }
    for &(f, t_) in &on {
        assert!(
            on.contains(&(f ^ 1, t_)),
            "feature {f} fired at {t_} without its partner"
        );
    }
    let mut expect = vec![0f32; 2048 * 16];
    for ((&t_, &f), &v) in tok.iter().zip(&feat).zip(&val) {
        for j in 0..16 {
            expect[t_ as usize * 16 + j] += v * dirs[f as usize][j];
        }
    }
    let ds = unravel::store::Dataset::open(&out).unwrap();
    let mut loader = unravel::store::Loader::new(
        &ds,
        &{
            let mut c = unravel::store::LoaderConfig::new("synthetic", 4096);
            c.mode = unravel::store::LoaderMode::SinglePass;
            c
        },
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let (rows, n) = loader.next_rows().unwrap().unwrap();
    assert_eq!(n, 2048);
    let worst = rows
        .iter()
        .zip(&expect)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-4, "truth does not reconstruct the data: {worst}");
    // Power law: feature 0 is active far more often than feature 39.
    let f = t["frequencies"].to_vec1::<f32>().unwrap();
    assert!(f[0] > 2.0 * f[39], "{} vs {}", f[0], f[39]);
}

#[test]
fn the_held_out_set_grows_past_a_small_last_shard_up_to_a_tenth_of_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    // 20 shards of 1024 rows and a remainder of 64: the remainder alone is too small for
    // --eval-tokens 1000, and two shards are 5% of the rows.
    let acts = tmp.path().join("acts");
    let mut spec = PlantedSpec::new(48, 24, 0.05, 20 * 1024 + 64, 7);
    spec.shard_tokens = 1024;
    write_planted(&spec, &acts).unwrap();
    let run = tmp.path().join("run");
    let r = ok(&train_args(
        &p(&acts),
        &p(&run),
        &["--tokens", "4096", "--eval-tokens", "1000"],
    ));
    assert!(
        r.stderr.contains("training set: 19456 rows in 19 shards; held out for evaluation: 1088 rows in 2 shards (5.3% of the data)\n"),
        "{}",
        r.stderr
    );
    let info = json(&run.join("run.json"));
    assert_eq!(info["eval_shards"], serde_json::json!([19, 20]), "{info}");
    assert_eq!(json(&run.join("eval.json"))["tokens"].as_u64(), Some(1000));

    // 3 shards of 4096 and 64 rows: one more shard would hold out a third, so the held-out set
    // stays the remainder, and says so before training.
    let acts = tmp.path().join("acts4");
    let mut spec = PlantedSpec::new(48, 24, 0.05, 3 * 4096 + 64, 7);
    spec.shard_tokens = 4096;
    write_planted(&spec, &acts).unwrap();
    let run = tmp.path().join("run4");
    let r = ok(&train_args(
        &p(&acts),
        &p(&run),
        &["--tokens", "4096", "--eval-tokens", "1000"],
    ));
    assert!(
        r.stderr.contains("training set: 12288 rows in 3 shards; held out for evaluation: 64 rows in 1 shard (0.5% of the data); evaluations use all 64, fewer than --eval-tokens 1000"),
        "{}",
        r.stderr
    );
    assert_eq!(
        json(&run.join("run.json"))["eval_shards"],
        serde_json::json!([3])
    );
    assert_eq!(json(&run.join("eval.json"))["tokens"].as_u64(), Some(64));

    // An asked-for held-out set above a tenth is kept, with a warning before training.
    let run = tmp.path().join("run4b");
    let r = ok(&train_args(
        &p(&acts),
        &p(&run),
        &["--tokens", "4096", "--eval-shards", "2"],
    ));
    assert!(
        r.stderr.contains("held out for evaluation: 4160 rows in 2 shards (33.7% of the data) — more than a tenth of the data"),
        "{}",
        r.stderr
    );
}

#[test]
fn ce_recovered_is_undefined_when_zero_ablation_lowers_the_loss() {
    // In the random-weight tiny GPT-2, zeroing the last residual stream lowers the loss
    // (measured: CE clean 9.912, zero-ablated 6.518): CE recovered is then no measure.
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/tests/fixtures/tiny-gpt2");
    let acts = tmp.path().join("acts");
    let hook = "blocks.2.hook_resid_post";
    ok(&[
        "extract",
        "--model",
        &model,
        "--corpus",
        &format!("{root}/data/sentences.txt"),
        "--hooks",
        hook,
        "--ctx",
        "16",
        "--store-dtype",
        "f32",
        "--out",
        &p(&acts),
        "--device",
        "cpu",
    ]);
    let ident = tmp.path().join("identity");
    write_identity_saelens(&ident, 32);
    let r = ok(&[
        "eval",
        "--sae",
        &p(&ident),
        "--acts",
        &p(&acts),
        "--hook",
        hook,
        "--model",
        &model,
        "--device",
        "cpu",
    ]);
    assert!(
        r.stdout.contains("  CE recovered: undefined (zero-ablation does not raise the loss: CE_zero 6.51790 <= CE_clean 9.91190)\n"),
        "{}",
        r.stdout
    );
    let ds = &json(&ident.join("eval-report.json"))["downstream"];
    assert!(ds["ce_recovered"].is_null(), "{ds}");
    assert!(ds["ce_zero"].as_f64().unwrap() < ds["ce_clean"].as_f64().unwrap());
}

/// One type holds every setting: each knob is a flag and a config-file key of the same name, and
/// both reach the saved config.toml the same way.
#[test]
fn every_setting_is_a_flag_and_a_config_key() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    planted(&acts, 8192);
    let knobs = [
        ("resample-every", "4096"),
        ("lr-decay-frac", "0.5"),
        ("beta2", "0.99"),
        ("scale-tokens", "2048"),
    ];
    let (by_flags, by_file) = (tmp.path().join("flags"), tmp.path().join("file"));
    let (acts_s, flags_s, file_s) = (p(&acts), p(&by_flags), p(&by_file));
    let mut args = train_args(&acts_s, &flags_s, &["--tokens", "8192"]);
    let flags: Vec<String> = knobs.iter().map(|(k, _)| format!("--{k}")).collect();
    for ((_, v), f) in knobs.iter().zip(&flags) {
        args.extend([f.as_str(), v]);
    }
    ok(&args);
    let file = tmp.path().join("knobs.toml");
    let toml: String = knobs.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    std::fs::write(&file, toml).unwrap();
    let file_arg = p(&file);
    let mut args = train_args(&acts_s, &file_s, &["--tokens", "8192"]);
    args.extend(["--config", file_arg.as_str()]);
    ok(&args);
    let saved = std::fs::read_to_string(by_flags.join("config.toml")).unwrap();
    for line in [
        "resample_every = 4096",
        "lr_decay_frac = 0.5",
        "beta2 = 0.99",
        "scale_tokens = 2048",
    ] {
        assert!(saved.lines().any(|l| l == line), "{line} in\n{saved}");
    }
    assert_eq!(
        saved,
        std::fs::read_to_string(by_file.join("config.toml")).unwrap()
    );
}
