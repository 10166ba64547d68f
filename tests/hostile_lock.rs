//! One process per output folder: a second writer fails at once with `folder in use by pid N`;
//! a lock left by a killed process blocks nothing; `kill -9` of `unravel run` leaves no stage
//! process behind, and the re-run completes. Run-config syntax errors name line and column.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, ok, p, unravel};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_unravel"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Waits (up to 120 s) until `cond` holds, failing if `child` ends first.
fn wait_for(child: &mut Child, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process ended before {what}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no {what} in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pid written into a folder's lock file, if any.
fn lock_pid(dir: &Path) -> Option<u32> {
    lock_pid_in(&dir.join(".unravel.lock"))
}

fn lock_pid_in(file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Asserts the one-line refusal of a second writer.
fn assert_in_use(r: &common::Run, pid: u32, command: &str) {
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let want = format!("folder in use by pid {pid} (another unravel {command}); wait for it or choose another folder");
    assert!(r.stderr.contains(&want), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

#[test]
fn a_second_train_into_the_same_folder_fails_at_once_and_the_first_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sae = dir.path().join("sae");
    ok(&[
        "synth",
        "--features",
        "32",
        "--dims",
        "16",
        "--tokens",
        "20000",
        "--shard-tokens",
        "5000",
        "--out",
        &p(&data),
    ]);
    let args = [
        "train",
        "--acts",
        &p(&data),
        "--d-sae",
        "32",
        "--tokens",
        "1000000000",
        "--batch",
        "256",
        "--log-every",
        "1",
        "--checkpoint-every",
        "2560",
        "--eval-shards",
        "0",
        "--eval-tokens",
        "1024",
        "--out",
        &p(&sae),
    ];
    let mut first = bin().args(args).spawn().unwrap();
    let pid = first.id();
    wait_for(&mut first, "its lock", || lock_pid(&sae) == Some(pid));
    let second = unravel(&args, &[]);
    assert_in_use(&second, pid, "train");
    assert!(
        second.stderr.contains(&format!("--out {}: ", p(&sae))),
        "{}",
        second.stderr
    );
    let metrics = sae.join("metrics.jsonl");
    wait_for(&mut first, "a checkpoint and 5 metrics lines", || {
        sae.join("checkpoints/latest").exists()
            && std::fs::read_to_string(&metrics).is_ok_and(|t| t.lines().count() >= 5)
    });
    // `train --resume` of the same folder is refused the same way.
    let resume = unravel(&["train", "--resume", &p(&sae)], &[]);
    assert_in_use(&resume, pid, "train");
    assert!(
        resume.stderr.contains(&format!("--resume {}: ", p(&sae))),
        "{}",
        resume.stderr
    );
    // Ctrl-C: the first saves a checkpoint and exits 130.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    assert_eq!(first.wait().unwrap().code(), Some(130));
    let steps: Vec<u64> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert!(steps.len() >= 5, "{steps:?}");
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
}

fn write_corpus(dir: &Path, docs: usize) -> PathBuf {
    let words = [
        "the", "cat", "sat", "on", "mat", "dog", "ran", "fast", "red", "blue",
    ];
    let text: String = (0..docs)
        .map(|i| {
            let t: Vec<&str> = (0..40)
                .map(|j| words[(i * 3 + j * 7) % words.len()])
                .collect();
            format!("{{\"text\": \"{}\"}}\n", t.join(" "))
        })
        .collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn extract_args(corpus: &Path, out: &Path) -> Vec<String> {
    [
        "extract",
        "--model",
        "tests/fixtures/tiny-gpt2",
        "--corpus",
        &p(corpus),
        "--hooks",
        "blocks.1.hook_resid_post",
        "--ctx",
        "32",
        "--batch",
        "4",
        "--shard-tokens",
        "1024",
        "--device",
        "cpu",
        "--out",
        &p(out),
    ]
    .map(String::from)
    .to_vec()
}

fn run_in_repo(args: &[String]) -> common::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_unravel"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "2")
        .args(args)
        .output()
        .unwrap();
    let r = common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    r
}

#[test]
fn two_extract_resumes_race_no_more_and_a_killed_holder_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 20000);
    let out = dir.path().join("acts");
    let args = extract_args(&corpus, &out);
    let resume: Vec<String> = args.iter().cloned().chain(["--resume".into()]).collect();

    // A fresh extraction, then a --resume of the same folder while it runs.
    let mut first = bin().args(&args).spawn().unwrap();
    let pid = first.id();
    wait_for(&mut first, "a shard", || {
        out.join("shard-00001.parquet").exists()
    });
    assert_in_use(&run_in_repo(&resume), pid, "extract");
    // kill -9: its lock file stays behind, naming a dead process.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(lock_pid(&out), Some(pid));

    // That lock blocks nothing; a second --resume while this one runs is refused.
    let mut second = bin().args(&resume).spawn().unwrap();
    let pid2 = second.id();
    wait_for(&mut second, "its lock", || lock_pid(&out) == Some(pid2));
    assert_in_use(&run_in_repo(&resume), pid2, "extract");
    second.kill().unwrap();
    second.wait().unwrap();

    // Finish with a smaller budget (resume may change --max-tokens): a complete, valid dataset.
    let mut last = resume.clone();
    last.extend(["--max-tokens".into(), "4096".into()]);
    let r = run_in_repo(&last);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ds = unravel::store::Dataset::open(&out).unwrap();
    ds.verify().unwrap();
    assert!(ds.manifest().complete);
    assert!(
        !out.join(".unravel.lock").exists(),
        "a finished run removes its lock file"
    );
}

#[test]
fn extract_parts_share_a_folder_but_not_a_part() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), 20000);
    let out = dir.path().join("acts");
    let part = |p: &str, max: Option<&str>| {
        let mut a = extract_args(&corpus, &out);
        a.extend(["--part".into(), p.into()]);
        if let Some(m) = max {
            a.extend(["--max-tokens".into(), m.into()]);
        }
        a
    };
    let mut first = bin().args(part("1/2", None)).spawn().unwrap();
    let pid = first.id();
    wait_for(&mut first, "its lock", || {
        lock_pid_in(&out.join(".unravel-p01.lock")) == Some(pid)
    });
    let other = run_in_repo(&part("2/2", Some("2048")));
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(out.join("__unravel__/manifest-p02.json").is_file());
    assert!(first.try_wait().unwrap().is_none(), "part 1 ended too soon");
    assert_in_use(&run_in_repo(&part("1/2", Some("2048"))), pid, "extract");
    first.kill().unwrap();
    first.wait().unwrap();
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                found.push((pid, cmd));
            }
        }
    }
    found
}

#[test]
fn kill_9_of_run_takes_its_stage_with_it_and_the_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run-kill9");
    let cfg = dir.path().join("mini.toml");
    std::fs::write(
        &cfg,
        "[synth]\nneurons = 24\nconcepts = 6\ntokens = 20000\nseed = 3\nshard-tokens = 5000\n\n\
         [train]\nexpansion = 2\ntokens = 3000000\nlr = 1e-3\ncheckpoint-every = 100000\neval-tokens = 4096\n",
    )
    .unwrap();
    let args = ["run", &p(&cfg), "--out", &p(&run)];
    let mut runner = bin().args(args).spawn().unwrap();
    let mut stage = None;
    wait_for(&mut runner, "the train stage", || {
        stage = lock_pid(&run.join("train"));
        stage.is_some()
    });
    // A second run into the same folder is refused while this one lives.
    assert_in_use(&unravel(&args, &[]), runner.id(), "run");
    wait_for(&mut runner, "a training checkpoint", || {
        run.join("train/checkpoints/latest").exists()
    });
    assert!(processes_mentioning(&p(&run))
        .iter()
        .any(|(pid, _)| Some(*pid) == stage));

    // kill -9 of the runner alone (not its process group).
    runner.kill().unwrap();
    runner.wait().unwrap();
    let t0 = Instant::now();
    let mut left = processes_mentioning(&p(&run));
    while !left.is_empty() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        left = processes_mentioning(&p(&run));
    }
    assert!(left.is_empty(), "survivors of the killed run: {left:?}");

    // The re-run resumes training from its checkpoint (the dead stage's lock file is still
    // there) and completes.
    let r = ok(&args);
    assert!(r.stdout.contains("synth: done"), "{}", r.stdout);
    assert!(r.stdout.contains("unravel train --resume"), "{}", r.stdout);
    let s = json(&run.join("summary.json"));
    assert!(
        s["stages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|st| st["name"] == "train"),
        "{s}"
    );
    assert!(!run.join(".unravel.lock").exists());
}

#[test]
fn a_lock_file_left_by_a_dead_process_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    std::fs::create_dir_all(&out).unwrap();
    // A pid that held the folder and died without tidying up (kill -9).
    std::fs::write(out.join(".unravel.lock"), "999999999 synth\n").unwrap();
    ok(&[
        "synth",
        "--features",
        "8",
        "--dims",
        "8",
        "--tokens",
        "1000",
        "--out",
        &p(&out),
    ]);
    unravel::store::Dataset::open(&out)
        .unwrap()
        .verify()
        .unwrap();
    assert!(!out.join(".unravel.lock").exists());
}

#[test]
fn a_command_refused_before_writing_leaves_no_folder_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let r = unravel(
        &[
            "synth",
            "--max-cosine",
            "0.5",
            "--clusters",
            "2",
            "--tokens",
            "100",
            "--out",
            &p(&out),
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("exclude each other"), "{}", r.stderr);
    assert!(!out.exists(), "an empty folder was left behind");
}

#[test]
fn a_run_config_syntax_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[synth]\nneurons = 8\ntokens = = 5\n").unwrap();
    let r = unravel(&["run", &p(&cfg), "--out", &p(&dir.path().join("r"))], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let want = format!("error: {}:3:10: ", p(&cfg));
    assert!(r.stderr.starts_with(&want), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(!dir.path().join("r").exists());
}
