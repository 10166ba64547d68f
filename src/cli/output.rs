//! Writing a command's result files: atomically, and on failure naming the flag or file that
//! chose the path.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically; a failure reads `WHAT: <cause>` (`what` names the flag
/// and path, e.g. `--json out.json`, or `writing out/audit.json`).
pub fn write(path: &Path, bytes: &[u8], what: impl FnOnce() -> String) -> Result<()> {
    unravel::io::write_atomic(path, bytes).with_context(what)
}
