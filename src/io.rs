//! Atomic file writes: a crash never leaves a file that looks complete (and a rename, once made,
//! survives it: `sync_dir`).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through `path.tmp`: write, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename durable: fsync the folder (best effort; not every platform allows it).
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes named tensors as a safetensors file, atomically (see [`write_atomic`]).
pub fn write_safetensors<S: AsRef<str>>(
    path: &Path,
    tensors: &[(S, candle_core::Tensor)],
) -> std::io::Result<()> {
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (k.as_ref(), v)), None)
        .map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}
