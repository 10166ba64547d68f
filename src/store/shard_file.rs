//! A shard's bytes on their way to disk: hashed (sha256) and counted as they pass, so the shard
//! writer needs no second read, and written out a megabyte at a time.
//!
//! On Linux the file is opened with `O_DIRECT` where the file system allows it, so each
//! megabyte goes from our buffer to the device instead of being copied into the page cache
//! first. That copy and its page-cache bookkeeping were about a fifth of the writer's CPU time
//! (BENCHMARKS.md), and a shard is written once and read much later, so caching it buys
//! nothing. `O_DIRECT` wants block-aligned memory, lengths and file offsets: the buffer is
//! 4096-aligned and written whole; at the end the last whole blocks go out directly and the
//! remainder after `O_DIRECT` is cleared. A file system that refuses `O_DIRECT` (at open or at
//! a write) gets ordinary buffered writes from that point on, with the same bytes.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Alignment of the buffer, its writes and their offsets (covers 512- and 4096-byte sectors).
const ALIGN: usize = 4096;
/// Bytes gathered before a write: parquet-rs splices column chunks in 8 KiB at a time, and one
/// system call per 8 KiB was ~3% of the writer's CPU.
const BUFFER_BYTES: usize = 1 << 20;

/// A shard file being written; see the module docs. Bytes stay in memory until a megabyte is
/// full or [`ShardFile::finish`]: `flush` does not write a partial block.
pub(crate) struct ShardFile {
    file: File,
    direct: bool,
    /// `BUFFER_BYTES` usable bytes from `start`, the first 4096-aligned offset.
    buf: Vec<u8>,
    start: usize,
    len: usize,
    hasher: Sha256,
    bytes: u64,
}

/// What a finished shard file is: its sha256 and length.
pub(crate) struct Written {
    pub sha256: [u8; 32],
    pub bytes: u64,
}

impl ShardFile {
    /// Creates (or truncates) `path`, with `O_DIRECT` where the platform and file system allow.
    pub(crate) fn create(path: &Path) -> io::Result<ShardFile> {
        Self::create_with(path, cfg!(target_os = "linux"))
    }

    /// As [`ShardFile::create`]; `direct: false` never tries `O_DIRECT`.
    fn create_with(path: &Path, direct: bool) -> io::Result<ShardFile> {
        let (file, direct) = match direct.then(|| open_direct(path)) {
            Some(Ok(file)) => (file, true),
            Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
            _ => (File::create(path)?, false),
        };
        let buf = vec![0; BUFFER_BYTES + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Ok(ShardFile {
            file,
            direct,
            buf,
            start,
            len: 0,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Writes out what is buffered, fsyncs and returns the file's hash and length.
    pub(crate) fn finish(mut self) -> io::Result<Written> {
        let whole = self.len / ALIGN * ALIGN;
        self.write_out(0, whole)?;
        if whole < self.len {
            self.stop_direct()?;
            self.write_out(whole, self.len)?;
        }
        self.file.sync_all()?;
        Ok(Written {
            sha256: self.hasher.finalize().into(),
            bytes: self.bytes,
        })
    }

    /// Writes buffer bytes `from..to` at the file's position, leaving `O_DIRECT` behind if the
    /// file system refuses a direct write (the bytes written so far stay, the rest goes buffered).
    fn write_out(&mut self, mut from: usize, to: usize) -> io::Result<()> {
        while from < to {
            match self
                .file
                .write(&self.buf[self.start + from..self.start + to])
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => from += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.stop_direct()?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Clears `O_DIRECT`: later writes go through the page cache.
    fn stop_direct(&mut self) -> io::Result<()> {
        if self.direct {
            clear_direct(&self.file)?;
            self.direct = false;
        }
        Ok(())
    }
}

impl Write for ShardFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BUFFER_BYTES - self.len);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        self.len += n;
        if self.len == BUFFER_BYTES {
            self.write_out(0, BUFFER_BYTES)?;
            self.len = 0;
        }
        Ok(n)
    }

    /// Keeps the bytes buffered: only whole megabytes and `finish` write.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(target_os = "linux")]
fn clear_direct(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor this File owns and keeps open; no memory is shared.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn open_direct(path: &Path) -> io::Result<File> {
    File::create(path)
}

#[cfg(not(target_os = "linux"))]
fn clear_direct(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes that are not a repeating block.
    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7919 % 251) as u8).collect()
    }

    /// Writes `data` in 8 KiB pieces (as parquet does), then a few odd ones.
    fn write(path: &Path, data: &[u8], direct: bool) -> Written {
        let mut file = ShardFile::create_with(path, direct).unwrap();
        let (head, tail) = data.split_at(data.len() / 2);
        for piece in head.chunks(8192) {
            file.write_all(piece).unwrap();
        }
        for piece in tail.chunks(3001) {
            file.write_all(piece).unwrap();
            file.flush().unwrap();
        }
        file.finish().unwrap()
    }

    #[test]
    fn every_length_reads_back_with_its_sha256_direct_or_not() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            0,
            1,
            4095,
            4096,
            4097,
            BUFFER_BYTES,
            BUFFER_BYTES + 12_345,
            3 * BUFFER_BYTES,
        ] {
            let bytes = data(n);
            for direct in [true, false] {
                let path = dir.path().join(format!("{n}-{direct}.bin"));
                let written = write(&path, &bytes, direct);
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "{n} bytes, {direct}");
                assert_eq!(written.bytes, n as u64);
                assert_eq!(written.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_refused_direct_write_goes_on_buffered_from_where_it_stopped() {
        // A buffer start off the 4096 alignment makes every direct write fail with EINVAL.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard.bin");
        let mut file = ShardFile::create_with(&path, true).unwrap();
        if !file.direct {
            eprintln!("SKIPPED: this file system refuses O_DIRECT at open");
            return;
        }
        file.start += 1;
        let bytes = data(2 * BUFFER_BYTES + 100);
        file.write_all(&bytes).unwrap();
        assert!(!file.direct);
        let written = file.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(written.bytes, bytes.len() as u64);
    }
}
