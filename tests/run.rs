//! `unravel run`: the demo end to end (its report's key numbers against the thresholds the issue
//! states), skipping completed stages, resuming an interrupted one, re-running what a changed
//! setting invalidates, and one-line errors for bad configs.

mod common;

use std::path::Path;

use common::{json, ok, p, unravel};

/// The stage summaries of a run, by name.
fn stage<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name} in {summary}"))
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn demo_config_runs_end_to_end_and_recovers_the_planted_truth() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("demo");
    let r = ok(&["run", "configs/demo.toml", "--out", &p(&run)]);
    assert!(r.stdout.contains("open "), "{}", r.stdout);
    let s = json(&run.join("summary.json"));
    assert_eq!(s["passed"], true, "{s}");
    assert_eq!(s["checks"].as_array().unwrap().len(), 4);

    // Planted concept directions recovered by the SAE (thresholds: configs/demo.toml [verify]).
    let v = &stage(&s, "verify-train")["results"];
    assert!(num(&v["recovered"]) >= 0.9, "recovered {v}");
    assert!(num(&v["mmcs"]) >= 0.95, "mmcs {v}");
    assert_eq!(v["planted"], 16);
    // The audit finds the planted polysemantic neurons.
    let a = &stage(&s, "verify-audit")["results"];
    assert!(num(&a["precision"]) >= 0.95, "{a}");
    assert!(num(&a["recall"]) >= 0.95, "{a}");
    assert!(num(&a["concept_f1"]) >= 0.9, "{a}");
    // Neurons are far more polysemantic than the SAE's features.
    let sides = stage(&s, "audit")["results"]["sides"]
        .as_array()
        .unwrap()
        .clone();
    let rate = |k: &str| num(&sides.iter().find(|x| x["kind"] == k).unwrap()["polysemantic_rate"]);
    assert!(rate("neurons") > 0.2, "{sides:?}");
    assert!(rate("features") < rate("neurons") / 2.0, "{sides:?}");
    // The SAE reconstructs and is sparse.
    let t = &stage(&s, "train")["results"];
    assert!(num(&t["ev"]) > 0.6 && num(&t["l0"]) < 20.0, "{t}");
    // The model path: the tiny GPT-2 read the whole shipped corpus.
    let e = &stage(&s, "extract")["results"];
    assert_eq!(e["hooks"].as_array().unwrap().len(), 6);
    assert!(num(&e["tokens"]) > 1000.0, "{e}");
    assert_eq!(
        stage(&s, "analyze")["results"]["hooks"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    // The index links every stage's outputs.
    let index = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(index.contains("all 4 checks pass"));
    for link in [
        "audit&#47;report.html",
        "logs&#47;train.log",
        "summary.json",
    ] {
        assert!(index.contains(link), "index lacks {link}");
    }
    for f in [
        "audit/report.html",
        "logs/train.log",
        "train/sae_weights.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }

    // Running again skips every stage and rewrites the same summary.
    let again = ok(&["run", "configs/demo.toml", "--out", &p(&run)]);
    assert_eq!(
        again.stdout.matches("skipped").count(),
        9,
        "{}",
        again.stdout
    );
    let s2 = json(&run.join("summary.json"));
    assert_eq!(
        stage(&s2, "verify-train")["results"],
        stage(&s, "verify-train")["results"]
    );
    assert_eq!(stage(&s2, "train")["status"], "done before");
}

/// A small run: planted neurons → SAE → audit, verified.
fn mini_config(dir: &Path, train_tokens: u64, l1: f64, extra: &str) -> std::path::PathBuf {
    let path = dir.join("mini.toml");
    std::fs::write(
        &path,
        format!(
            r#"[run]
title = "mini"

[synth]
neurons = 24
concepts = 6
tokens = 20000
seed = 3
shard-tokens = 5000

[train]
expansion = 2
tokens = {train_tokens}
lr = 1e-3
l1-coefficient = {l1}
checkpoint-every = 20
eval-tokens = 4096

[audit]

{extra}
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_changed_setting_reruns_that_stage_and_what_reads_it_and_keeps_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = mini_config(dir.path(), 100_000, 5.0, "");
    let r = ok(&["run", &p(&cfg), "--out", &p(&run)]);
    assert_eq!(r.stdout.matches("skipped").count(), 0);
    // synth, train, audit, verify-train, verify-audit
    let s = json(&run.join("summary.json"));
    assert_eq!(s["stages"].as_array().unwrap().len(), 5, "{s}");

    let cfg = mini_config(dir.path(), 100_000, 4.0, "");
    let r = ok(&["run", &p(&cfg), "--out", &p(&run)]);
    assert!(r.stdout.contains("[1/5] synth: done"), "{}", r.stdout);
    for stage in ["train", "audit", "verify-train", "verify-audit"] {
        assert!(
            !r.stdout.contains(&format!("{stage}: done")),
            "{stage} should re-run:\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("previous output kept in"), "{}", r.stdout);
    let old: Vec<_> = std::fs::read_dir(run.join(".old"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(old.iter().any(|n| n.starts_with("train-")), "{old:?}");
    let cfg_toml = std::fs::read_to_string(run.join("train/config.toml")).unwrap();
    assert!(cfg_toml.contains("l1_coefficient = 4"), "{cfg_toml}");
}

#[test]
fn an_interrupted_run_resumes_training_from_its_checkpoint() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = mini_config(dir.path(), 3_000_000, 5.0, "");
    // Start the run in its own process group, and kill the whole group (runner and stage) once
    // training has written a checkpoint.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_unravel"))
        .args(["run", &p(&cfg), "--out", &p(&run)])
        .env("RAYON_NUM_THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let latest = run.join("train/checkpoints/latest");
    while !latest.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    child.wait().unwrap();
    assert!(!run.join("summary.json").exists());

    let r = ok(&["run", &p(&cfg), "--out", &p(&run)]);
    assert!(r.stdout.contains("synth: done"), "{}", r.stdout);
    assert!(
        r.stdout.contains("unravel train --resume"),
        "training should resume:\n{}",
        r.stdout
    );
    let s = json(&run.join("summary.json"));
    let t = &stage(&s, "train")["results"];
    assert!(num(&t["tokens_trained"]) >= 3_000_000.0, "{t}");
    assert_eq!(s["passed"], true);
}

#[test]
fn a_failed_check_exits_1_and_the_index_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = mini_config(dir.path(), 100_000, 5.0, "[verify]\nmin-recall = 1.01\n");
    let r = unravel(&["run", &p(&cfg), "--out", &p(&run)], &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 of 1 checks failed"), "{}", r.stderr);
    let s = json(&run.join("summary.json"));
    assert_eq!(s["passed"], false);
    let index = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(index.contains("1 of 1 checks fail"));
}

#[test]
fn bad_configs_fail_with_one_line_naming_the_file_and_section() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 8] = [
        ("[trian]\n", "unknown section [trian]"),
        (
            "[synth]\nneurons = 8\nout = \"x\"\n",
            "[synth] remove `out`",
        ),
        (
            "[train]\ndata = \"nowhere\"\n",
            "[train] data = \"nowhere\": neither a dataset stage",
        ),
        ("[run]\ntitle = \"t\"\n", "no stages"),
        (
            "[synth]\nneurons = 8\n[verify]\nmin-recal = 0.9\n",
            "[verify] unknown key `min-recal`",
        ),
        ("[synth\n", "mini.toml"),
        (
            "[synth]\nneurons = 8\n[train]\nsynth = \"synth-sae-bench-tiny\"\ndata = \"synth\"\n",
            "[train] give data (a dataset) or synth (a generator to stream from), not both",
        ),
        (
            "[train]\nsynth = \"synth-sae-bench-tiny\"\n[eval]\n",
            "[eval] there is no SAE to evaluate: [train] `train` streams from the generator synth-sae-bench-tiny",
        ),
    ];
    for (text, want) in cases {
        let cfg = dir.path().join("mini.toml");
        std::fs::write(&cfg, text).unwrap();
        let r = unravel(&["run", &p(&cfg), "--out", &p(&dir.path().join("r"))], &[]);
        assert_ne!(r.code, 0, "{text}");
        assert!(r.stderr.contains(want), "{text}: {}", r.stderr);
        assert!(r.stderr.contains("mini.toml"), "{text}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{text}: {}", r.stderr);
    }
    let r = unravel(&["run", "configs/nope.toml"], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("configs/nope.toml"), "{}", r.stderr);
}

#[test]
fn a_failing_stage_names_its_log_and_the_fixed_run_continues() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = dir.path().join("bad.toml");
    let text = |model: &str| {
        format!(
            "[extract]\nmodel = \"{model}\"\ncorpus = \"data/corpus.jsonl\"\nhooks = \"blocks.0.hook_resid_post\"\nctx = 64\n\n[analyze]\n"
        )
    };
    std::fs::write(&cfg, text("tests/fixtures/no-such-model")).unwrap();
    let r = unravel(&["run", &p(&cfg), "--out", &p(&run)], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("stage extract failed") && r.stderr.contains("logs/extract.log"),
        "{}",
        r.stderr
    );
    let log = std::fs::read_to_string(run.join("logs/extract.log")).unwrap();
    assert!(log.contains("no-such-model"), "{log}");
    std::fs::write(&cfg, text("tests/fixtures/tiny-gpt2")).unwrap();
    let r = ok(&["run", &p(&cfg), "--out", &p(&run)]);
    assert!(r.stdout.contains("[2/2] analyze"), "{}", r.stdout);
    assert!(run.join("analyze/analysis.json").is_file());
}

#[test]
fn dry_run_prints_the_commands_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = ok(&["run", "configs/demo.toml", "--out", &p(&run), "--dry-run"]);
    assert!(
        r.stdout.contains("unravel train --acts ") && r.stdout.contains("--l1-coefficient 5"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[9/9] analyze: unravel analyze"),
        "{}",
        r.stdout
    );
    assert!(!run.exists());
}

#[test]
fn every_shipped_run_config_plans_and_its_flags_parse() {
    let dir = tempfile::tempdir().unwrap();
    for (config, stages) in [
        ("configs/demo.toml", 9),
        ("configs/gpt2-small.toml", 9),
        ("configs/gpt2-small-cuda.toml", 9),
        ("configs/distilbert.toml", 9),
        ("configs/minilm.toml", 8),
        ("configs/synth-sae-bench.toml", 2),
    ] {
        let r = ok(&[
            "run",
            config,
            "--dry-run",
            "--out",
            &p(&dir.path().join("r")),
        ]);
        assert!(
            r.stdout.contains(&format!("[{stages}/{stages}]")),
            "{config}: {}",
            r.stdout
        );
    }
    // A misspelt flag is caught before anything runs.
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, "[synth]\nneurons = 8\ntokenz = 100\n").unwrap();
    let r = unravel(&["run", &p(&cfg), "--out", &p(&dir.path().join("t"))], &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("[synth] unexpected argument '--tokenz'"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("t").exists());
}

#[test]
fn every_kind_of_stage_spec_writes_a_command_line_its_command_parses() {
    // Dry runs parse every stage's command line with the stage's own flags before printing it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("all.toml");
    std::fs::write(
        &cfg,
        "[extract]\nmodel = \"tests/fixtures/tiny-gpt2\"\ncorpus = \"data/corpus.jsonl\"\n\
         hooks = \"blocks.0.hook_resid_post\"\n[plant]\nfeatures = 8\nseed = 3\n\
         [train]\nd-sae = 16\n[eval]\nshards = \"all\"\n\
         [[audit]]\nname = \"audit\"\n[[audit]]\nname = \"audit-raw\"\nsae = false\n\
         [analyze]\ndata = \"extract\"\n[verify]\nthreshold = 0.8\nmin-mmcs = 0.5\n",
    )
    .unwrap();
    let run = dir.path().join("r");
    let r = ok(&["run", &p(&cfg), "--out", &p(&run), "--dry-run"]);
    let line = |i: usize, name: &str, args: &str| {
        format!(
            "[{i}/8] {name}: unravel {}",
            args.replace("R/", &format!("{}/", p(&run)))
        )
    };
    for expected in [
        line(1, "extract", "extract --corpus data/corpus.jsonl --hooks blocks.0.hook_resid_post --model tests/fixtures/tiny-gpt2 --out R/extract"),
        line(2, "plant", "plant --acts R/extract --features 8 --seed 3 --out R/plant"),
        line(3, "train", "train --acts R/plant --d-sae 16 --out R/train"),
        line(4, "eval", "eval --sae R/train --acts R/plant --json R/eval/eval.json --shards all"),
        line(5, "audit", "audit --acts R/plant --sae R/train --out R/audit"),
        line(6, "audit-raw", "audit --acts R/plant --out R/audit-raw"),
        line(8, "analyze", "analyze --acts R/extract --out R/analyze"),
        line(7, "verify-train", "verify --truth R/plant --sae R/train --json R/verify-train/verify.json --threshold 0.8"),
    ] {
        assert!(r.stdout.contains(&expected), "{expected}\n{}", r.stdout);
    }
    assert!(!run.exists());
}

#[test]
fn a_train_stage_streams_from_a_generator_and_is_verified_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bench.toml");
    std::fs::write(
        &cfg,
        "[train]\nsynth = \"synth-sae-bench-tiny\"\nd-sae = 128\ntokens = 40960\nbatch = 512\n\
         eval-tokens = 2048\n[verify]\nmin-mcc = 0.05\n",
    )
    .unwrap();
    let run = dir.path().join("r");
    let r = ok(&["run", &p(&cfg), "--out", &p(&run)]);
    assert!(r.stdout.contains("[2/2]"), "{}", r.stdout);
    let summary = json(&run.join("summary.json"));
    let v = &stage(&summary, "verify-train")["results"];
    // Scored against the generator's dictionary (1 024 features in 96 dims) and its held-out rows.
    assert_eq!(v["planted"], 1024, "{v}");
    assert_eq!(v["latents"], 128, "{v}");
    for key in ["mcc", "uniqueness", "f1", "l0", "explained_variance"] {
        let x = num(&v[key]);
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    // The sample EV is the trainer's held-out EV: the same 2 048 rows.
    let ev_train = num(&stage(&summary, "train")["results"]["ev"]);
    assert!(
        (num(&v["explained_variance"]) - ev_train).abs() < 2e-3,
        "{v} vs {ev_train}"
    );
    assert!(r.stdout.contains("uniqueness"), "{}", r.stdout);
}
