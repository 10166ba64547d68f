//! `unravel run CONFIG.toml`: the stages of a run config, each as a child `unravel` process whose
//! output is shown and logged to `RUN/logs/NAME.log`; completed stages are skipped, interrupted
//! ones resumed; at the end `RUN/summary.json` and `RUN/index.html`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use unravel::pipeline::index::INDEX_FILE;
use unravel::pipeline::plan::{plan_file, Kind, Plan, Stage};
use unravel::pipeline::state::{self, Status};
use unravel::pipeline::summary::{command_line, summarise, SUMMARY_FILE};

pub const RUN_EXAMPLES: &str = "Examples:\n  \
# the embedded demo: a tiny model, planted features and neurons, a few minutes on 2 cores\n  \
unravel run configs/demo.toml\n\n  \
# GPT-2 small layer 6 overnight (needs the Hugging Face hub once, then works offline)\n  \
unravel run configs/gpt2-small.toml --out runs/gpt2-l6\n\n  \
# what would run, as plain unravel commands\n  \
unravel run configs/demo.toml --dry-run\n\n\
A config has a section per stage: [extract], [synth], [plant], [train], [eval], [audit], [analyze]\n\
(several of one kind as [[audit]] with a `name`), whose keys are that command's flags\n\
(`d-sae = 1024` -> --d-sae 1024). `data = \"STAGE\"` picks the dataset a stage reads, `sae = \"STAGE\"`\n\
the SAE. SAEs trained on planted features and audits of planted neurons are verified against the\n\
truth automatically; [verify] sets thresholds (min-recovered, min-mmcs, min-mcc, max-dead,\n\
min-precision, min-recall, min-concept-f1). Each stage writes RUN/NAME; re-running skips what is\n\
complete and resumes what was interrupted. Opens with RUN/index.html; RUN/summary.json for scripts.\n\
Exit status 1 when a stage fails or a check fails.";

#[derive(Args)]
pub struct RunArgs {
    /// Run config (TOML), e.g. configs/demo.toml.
    #[arg(value_name = "CONFIG")]
    config: PathBuf,
    /// Run folder (default: the config's [run] out, else runs/<config name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print each stage's status and command line, run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What to do with a stage on this invocation.
enum Action {
    Skip(state::Done),
    /// Run these arguments (the stage's own, or a resume).
    Run(Vec<String>),
}

/// Decides how to (re)start a stage, moving stale output aside.
fn action(plan: &Plan, stage: &Stage, dry: bool) -> Result<Action> {
    let run = &plan.run_dir;
    let aside = |why: &str| -> Result<()> {
        if dry {
            println!(
                "    ({why}: its folder would be moved to {}/.old/)",
                run.display()
            );
            return Ok(());
        }
        if let Some(to) = state::move_aside(run, stage)
            .with_context(|| format!("cannot move {} aside", stage.out.display()))?
        {
            println!("    {why}: previous output kept in {}", to.display());
        }
        Ok(())
    };
    Ok(match state::status(run, stage) {
        Status::Done(d) => Action::Skip(d),
        Status::New => Action::Run(stage.args.clone()),
        Status::Stale => {
            aside("settings or inputs changed since it completed")?;
            Action::Run(stage.args.clone())
        }
        Status::StaleAttempt => {
            aside("an unfinished attempt with other settings")?;
            Action::Run(stage.args.clone())
        }
        Status::Interrupted => match stage.spec.resume_args() {
            Some(args) => Action::Run(args),
            None => {
                aside("interrupted before it completed")?;
                Action::Run(stage.args.clone())
            }
        },
    })
}

/// Runs `unravel ARGS` as a child, showing and logging its output. Standard error stays on the
/// terminal (progress bars) when there is one, and is logged otherwise.
fn run_child(args: &[String], log: &Path, interrupted: &AtomicBool) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the unravel executable")?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
    let file = Arc::new(std::sync::Mutex::new(file));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut command = Command::new(&exe);
    die_with_parent(&mut command);
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(if tty {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    // Tee each stream, line by line, to ours and to the log.
    let tee = |stream: Box<dyn std::io::Read + Send>, to_stderr: bool| {
        let file = file.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(|l| l.ok())
            {
                if to_stderr {
                    eprintln!("    {line}");
                } else {
                    println!("    {line}");
                }
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
        })
    };
    let mut threads = vec![];
    if let Some(out) = child.stdout.take() {
        threads.push(tee(Box::new(out), false));
    }
    if let Some(err) = child.stderr.take() {
        threads.push(tee(Box::new(err), true));
    }
    let status = child.wait().context("waiting for a stage")?;
    for t in threads {
        let _ = t.join();
    }
    if status.success() {
        return Ok(());
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    match status.code() {
        Some(c) => bail!("exit status {c}"),
        None => bail!("killed by a signal"),
    }
}

/// Makes the stage process die with this one, even on `kill -9` (Linux: a parent-death signal),
/// so a re-run never races a survivor. The signal fires when the spawning thread ends: stages are
/// spawned from the main thread, whose end is the process's.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // Safety: the closure runs in the child between fork and exec and calls only prctl and
    // getppid, both async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nothing would ever signal us.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Checks a command line the way `unravel` would parse it; the message is clap's first line.
pub type ArgCheck = fn(&[String]) -> std::result::Result<(), String>;

/// The plan of the config, every stage's flags checked as `unravel` would parse them.
fn checked_plan(a: &RunArgs, check: ArgCheck) -> Result<Plan> {
    let plan = plan_file(&a.config, a.out.as_deref()).map_err(|e| anyhow!(e))?;
    for stage in &plan.stages {
        check(&stage.args).map_err(|e| {
            anyhow!(
                "{}: [{}] {e} (keys are the flags of `unravel {}`; see `unravel {} --help`)",
                a.config.display(),
                stage.name,
                stage.kind.as_str(),
                stage.kind.as_str()
            )
        })?;
    }
    Ok(plan)
}

/// Creates the run folder and keeps the config in it as config.toml.
fn copy_config(a: &RunArgs, run: &Path) -> Result<()> {
    std::fs::create_dir_all(run)
        .with_context(|| format!("--out {}: cannot create the run folder", run.display()))?;
    let text =
        std::fs::read(&a.config).with_context(|| format!("{}: cannot read", a.config.display()))?;
    unravel::io::write_atomic(&run.join("config.toml"), &text)
        .with_context(|| format!("cannot write {}", run.join("config.toml").display()))
}

pub fn cmd_run(a: &RunArgs, check: ArgCheck) -> Result<()> {
    let plan = checked_plan(a, check)?;
    let run = plan.run_dir.clone();
    println!(
        "run {}: {} stages -> {}",
        plan.title,
        plan.stages.len(),
        run.display()
    );
    // Held to the end: a second `unravel run` into this folder fails at once.
    let _lock = if a.dry_run {
        None
    } else {
        Some(unravel::folder_lock::lock_output("--out", &run, "run")?)
    };
    if !a.dry_run {
        copy_config(a, &run)?;
    }
    // Ctrl-C reaches the child stage (same process group); the runner stops after it.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let n = plan.stages.len();
    let mut ran = vec![false; n];
    let mut seconds = vec![0.0; n];
    for (i, stage) in plan.stages.iter().enumerate() {
        let header = format!("[{}/{n}] {}", i + 1, stage.name);
        if interrupted.load(Ordering::SeqCst) {
            bail!(
                "interrupted before stage {}; run `unravel run {}` again to continue",
                stage.name,
                a.config.display()
            );
        }
        match action(&plan, stage, a.dry_run)? {
            Action::Skip(done) => {
                println!("{header}: done ({:.1}s), skipped", done.seconds);
                seconds[i] = done.seconds;
            }
            Action::Run(args) => {
                let shown = command_line(&Stage {
                    args: args.clone(),
                    ..stage.clone()
                });
                println!("{header}: {shown}");
                if a.dry_run {
                    continue;
                }
                state::mark_started(&run, stage)
                    .with_context(|| format!("cannot write to {}", run.display()))?;
                let t0 = std::time::Instant::now();
                let log = run.join("logs").join(format!("{}.log", stage.name));
                if let Err(e) = run_child(&args, &log, &interrupted) {
                    bail!(
                        "stage {} failed ({e}); its output is in {}. Fix the cause and run `unravel run {}` again: completed stages are kept{}",
                        stage.name,
                        log.display(),
                        a.config.display(),
                        if matches!(stage.kind, Kind::Extract | Kind::Train) { " and this one resumes" } else { "" }
                    );
                }
                seconds[i] = t0.elapsed().as_secs_f64();
                ran[i] = true;
                state::mark_done(&run, stage, &command_line(stage), seconds[i])
                    .with_context(|| format!("cannot write to {}", run.display()))?;
            }
        }
    }
    if a.dry_run {
        return Ok(());
    }
    let summary = summarise(&plan, &ran, &seconds);
    let json = serde_json::to_string_pretty(&summary)?;
    unravel::io::write_atomic(&run.join(SUMMARY_FILE), json.as_bytes())
        .with_context(|| format!("cannot write {}", run.join(SUMMARY_FILE).display()))?;
    unravel::pipeline::index::write_index(&summary, &run)
        .with_context(|| format!("cannot write {}", run.join(INDEX_FILE).display()))?;
    print_summary(&summary);
    println!("open {}", run.join(INDEX_FILE).display());
    if !summary.passed {
        bail!(
            "{} of {} checks failed (see {})",
            summary.checks.iter().filter(|c| !c.pass).count(),
            summary.checks.len(),
            run.join(INDEX_FILE).display()
        );
    }
    Ok(())
}

/// The key numbers, a few lines.
fn print_summary(s: &unravel::pipeline::summary::Summary) {
    println!("summary:");
    for st in &s.stages {
        println!("  {:<16} {}", st.name, st.line());
    }
    for c in &s.checks {
        println!(
            "  check {:<10} {:<12} {:.4} {:<8} {}",
            c.stage,
            c.check,
            c.value,
            c.threshold,
            if c.pass { "PASS" } else { "FAIL" }
        );
    }
}
