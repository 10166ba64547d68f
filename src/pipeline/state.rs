//! What a run folder says about each stage: done (with which fingerprint), started, or new.
//!
//! `RUN/.stages/NAME.json` is written (atomically) when a stage completes, and
//! `RUN/.stages/NAME.started` when it starts. Outputs of a stage whose settings changed, or of an
//! attempt that cannot resume, are moved to `RUN/.old/` rather than deleted: nothing is lost.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Stage;

/// The record of a completed stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub fingerprint: String,
    pub command: String,
    pub seconds: f64,
    /// Seconds since the Unix epoch.
    pub finished: u64,
}

/// Where a stage stands.
#[derive(Debug, Clone)]
pub enum Status {
    /// Completed with the current settings.
    Done(Done),
    /// Completed, but with other settings (or other inputs).
    Stale,
    /// Started with the current settings and not completed (interrupted or failed).
    Interrupted,
    /// Started with other settings and not completed.
    StaleAttempt,
    /// Never started.
    New,
}

fn stages_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(".stages")
}

fn done_path(run_dir: &Path, name: &str) -> PathBuf {
    stages_dir(run_dir).join(format!("{name}.json"))
}

fn started_path(run_dir: &Path, name: &str) -> PathBuf {
    stages_dir(run_dir).join(format!("{name}.started"))
}

/// Where `stage` stands in `run_dir`.
pub fn status(run_dir: &Path, stage: &Stage) -> Status {
    let done: Option<Done> = std::fs::read_to_string(done_path(run_dir, &stage.name))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    match done {
        Some(d) if d.fingerprint == stage.fingerprint && stage.out.exists() => Status::Done(d),
        Some(_) => Status::Stale,
        None => match std::fs::read_to_string(started_path(run_dir, &stage.name)) {
            Ok(f) if f.trim() == stage.fingerprint => Status::Interrupted,
            Ok(_) => Status::StaleAttempt,
            Err(_) if stage.out.exists() => Status::StaleAttempt,
            Err(_) => Status::New,
        },
    }
}

/// Records that `stage` starts now.
pub fn mark_started(run_dir: &Path, stage: &Stage) -> std::io::Result<()> {
    let _ = std::fs::remove_file(done_path(run_dir, &stage.name));
    crate::io::write_atomic(
        &started_path(run_dir, &stage.name),
        stage.fingerprint.as_bytes(),
    )
}

/// Records that `stage` completed.
pub fn mark_done(
    run_dir: &Path,
    stage: &Stage,
    command: &str,
    seconds: f64,
) -> std::io::Result<Done> {
    let done = Done {
        fingerprint: stage.fingerprint.clone(),
        command: command.to_string(),
        seconds,
        finished: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let json = serde_json::to_string_pretty(&done).map_err(std::io::Error::other)?;
    crate::io::write_atomic(&done_path(run_dir, &stage.name), json.as_bytes())?;
    let _ = std::fs::remove_file(started_path(run_dir, &stage.name));
    Ok(done)
}

/// Moves a stage's output folder to `RUN/.old/NAME-<unix time>` and forgets the stage; returns
/// where it went (None when there was nothing to move).
pub fn move_aside(run_dir: &Path, stage: &Stage) -> std::io::Result<Option<PathBuf>> {
    let _ = std::fs::remove_file(done_path(run_dir, &stage.name));
    let _ = std::fs::remove_file(started_path(run_dir, &stage.name));
    if !stage.out.exists() {
        return Ok(None);
    }
    let old = run_dir.join(".old");
    std::fs::create_dir_all(&old)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut to = old.join(format!("{}-{stamp}", stage.name));
    let mut k = 1;
    while to.exists() {
        to = old.join(format!("{}-{stamp}-{k}", stage.name));
        k += 1;
    }
    std::fs::rename(&stage.out, &to)?;
    Ok(Some(to))
}
