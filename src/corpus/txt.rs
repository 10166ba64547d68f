//! [`TxtReader`]: a .txt file, one document, read a block at a time.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::record::{Head, ReadStats};
use super::utf8::decode_part;
use super::{CorpusError, Result};

/// Reads a .txt file (one document) a block at a time.
pub(super) struct TxtReader {
    file: PathBuf,
    reader: File,
    /// Bytes read from the file so far.
    offset: u64,
    /// Bytes read but not yet decoded (a character cut off by the last read).
    raw: Vec<u8>,
    started: bool,
    eof: bool,
}

impl TxtReader {
    pub(super) fn open(path: &Path) -> Result<Self> {
        Ok(TxtReader {
            file: path.into(),
            reader: File::open(path).map_err(|e| CorpusError::io(path, e))?,
            offset: 0,
            raw: Vec::new(),
            started: false,
            eof: false,
        })
    }

    /// The file's one record, once.
    pub(super) fn start(&mut self) -> Option<Head> {
        if std::mem::replace(&mut self.started, true) {
            return None;
        }
        Some(Head {
            labels: Vec::new(),
            has_text: true,
        })
    }

    /// Appends about `max` more bytes of text to `out`; false at the end of the file.
    pub(super) fn more(
        &mut self,
        out: &mut String,
        max: usize,
        lossy: bool,
        stats: &mut ReadStats,
    ) -> Result<bool> {
        if self.eof && self.raw.is_empty() {
            return Ok(false);
        }
        let first = self.offset == 0;
        let old = self.raw.len();
        self.raw.resize(old + max, 0);
        let mut n = 0;
        while old + n < self.raw.len() {
            match self.reader.read(&mut self.raw[old + n..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CorpusError::io(&self.file, e)),
            }
        }
        self.raw.truncate(old + n);
        self.offset += n as u64;
        if first {
            strip_bom(&mut self.raw);
        }
        let base = self.offset - self.raw.len() as u64;
        stats.lossy_replacements += decode_part(&mut self.raw, self.eof, lossy, out, |at| {
            CorpusError::InvalidUtf8 {
                file: self.file.clone(),
                line: None,
                row: None,
                offset: base + at as u64,
            }
        })?;
        Ok(true)
    }
}

/// Drops a leading UTF-8 byte-order mark; returns how many bytes were dropped (0 or 3).
pub(super) fn strip_bom(bytes: &mut Vec<u8>) -> usize {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
        3
    } else {
        0
    }
}
