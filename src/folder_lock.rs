//! One process per output folder: every command that writes a folder holds an advisory lock on
//! `DIR/.unravel.lock` (`flock`, exclusive, non-blocking) for as long as it runs. The OS drops the
//! lock when the process ends, even on `kill -9`, so a lock is never stale; a second process
//! fails at once, naming the holder's pid and command (written into the lock file).
//!
//! Readers never see the lock file: datasets list their files in the manifest, and code that asks
//! whether a folder is empty skips lock files ([`is_lock_file`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file of a folder written by one process.
pub const LOCK_FILE: &str = ".unravel.lock";

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum FolderLockError {
    #[error("{flag} {dir}: folder in use by pid {pid} (another unravel {command}); wait for it or choose another folder")]
    InUse {
        flag: String,
        dir: PathBuf,
        pid: String,
        command: String,
    },
    #[error("{flag} {dir}: {reason}")]
    Io {
        flag: String,
        dir: PathBuf,
        reason: String,
    },
}

/// A held folder lock; dropping it releases the lock (and tidies up, see [`Drop`]).
#[derive(Debug)]
pub struct FolderLock {
    /// Holds the lock: closing it (on drop) releases it.
    _file: File,
    path: PathBuf,
    /// The folder did not exist before this lock made it: removed again if still empty on drop.
    created_dir: Option<PathBuf>,
}

/// Locks `dir` (created if needed) for `command`, the `unravel` subcommand that writes it.
/// `flag` names the folder in the message (`--out`, `--resume`, ...).
pub fn lock_output(flag: &str, dir: &Path, command: &str) -> Result<FolderLock, FolderLockError> {
    lock_named(flag, dir, LOCK_FILE, command)
}

/// Locks the folder that holds the output file `file` (`.` when it has no folder part).
pub fn lock_output_file(
    flag: &str,
    file: &Path,
    command: &str,
) -> Result<FolderLock, FolderLockError> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    lock_output(flag, dir, command)
}

/// Locks one part (`p03`) of a folder shared by `extract --part` runs: parts write disjoint
/// files, so each holds its own lock file `.unravel-p03.lock`.
pub fn lock_output_part(
    flag: &str,
    dir: &Path,
    part_tag: &str,
    command: &str,
) -> Result<FolderLock, FolderLockError> {
    lock_named(flag, dir, &format!(".unravel-{part_tag}.lock"), command)
}

/// Whether a file name is one of our lock files (to be ignored where a folder's contents count).
pub fn is_lock_file(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with(".unravel") && n.ends_with(".lock"))
}

fn lock_named(
    flag: &str,
    dir: &Path,
    name: &str,
    command: &str,
) -> Result<FolderLock, FolderLockError> {
    let io_err = |what: &str, e: std::io::Error| FolderLockError::Io {
        flag: flag.into(),
        dir: dir.into(),
        reason: format!("{what}: {e}"),
    };
    let created_dir = (!dir.exists()).then(|| dir.to_path_buf());
    std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create the folder", e))?;
    let path = dir.join(name);
    // A holder that finishes removes the lock file; a lock taken on a file that was just removed
    // is worthless, so take it again on the file now at `path`.
    for _ in 0..100 {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("cannot create its lock file", e))?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let (pid, command) = holder(&mut file);
                return Err(FolderLockError::InUse {
                    flag: flag.into(),
                    dir: dir.into(),
                    pid,
                    command,
                });
            }
            Err(e) => return Err(io_err("cannot lock it", e)),
        }
        if !same_file(&file, &path) {
            continue;
        }
        let record = format!("{} {command}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(record.as_bytes()))
            .map_err(|e| io_err("cannot write its lock file", e))?;
        return Ok(FolderLock {
            _file: file,
            path,
            created_dir,
        });
    }
    Err(io_err(
        "cannot lock it",
        std::io::Error::other("its lock file keeps disappearing"),
    ))
}

/// The pid and command written by the holder. It writes them right after locking, so a reader
/// may briefly find the file empty.
fn holder(file: &mut File) -> (String, String) {
    for _ in 0..20 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Some((pid, command)) = text.trim().split_once(' ') {
                return (pid.to_string(), command.to_string());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    ("?".into(), "command".into())
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // Safety: a plain syscall on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(unix))]
fn try_lock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether `path` still names the open `file` (not removed or replaced since it was opened).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for FolderLock {
    /// Removes the lock file while still holding the lock (a process that opened it meanwhile
    /// sees it gone and retries), then the folder if this lock made it and nothing else was
    /// written; closing the file releases the lock.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.created_dir {
            // Fails, as it should, unless the folder is empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_command() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let held = lock_output("--out", &dir, "train").unwrap();
        let lock_text = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(lock_text, format!("{} train\n", std::process::id()));
        let e = lock_output("--out", &dir, "audit").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--out {}: folder in use by pid {} (another unravel train); wait for it or choose another folder",
                dir.display(),
                std::process::id()
            )
        );
        // Parts of one folder lock separately.
        let p1 = lock_output_part("--out", &dir, "p01", "extract").unwrap();
        assert!(lock_output_part("--out", &dir, "p01", "extract").is_err());
        drop(p1);
        drop(held);
        // Made by the lock and left empty: gone again, and free.
        assert!(!dir.exists());
        drop(lock_output("--out", &dir, "train").unwrap());
    }

    #[test]
    fn a_folder_with_other_files_is_kept_and_a_leftover_lock_file_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join(LOCK_FILE), "4000000000 extract\n").unwrap();
        let held = lock_output_file("--json", &dir.join("eval.json"), "eval").unwrap();
        std::fs::write(dir.join("eval.json"), "{}").unwrap();
        drop(held);
        assert!(!dir.join(LOCK_FILE).exists());
        assert!(dir.join("eval.json").is_file());
    }

    #[test]
    fn lock_file_names() {
        assert!(is_lock_file(".unravel.lock".as_ref()));
        assert!(is_lock_file(".unravel-p03.lock".as_ref()));
        assert!(!is_lock_file("manifest.json".as_ref()));
        assert!(!is_lock_file("shard-00000.parquet".as_ref()));
    }
}
