//! [`LongLine`]: a JSON-lines record too long to hold whole (over [`super::read::LONG_LINE`]
//! bytes, e.g. one 100 MB text field), parsed in place in the file and its text read a piece at
//! a time, so that memory stays bounded by the piece size, not the line.
//!
//! The object is scanned once up to its text field. When the label fields all come before the
//! text (or there are none), the text is streamed from there and the rest of the line is only
//! scanned after it — so with `--max-tokens` the rest of a huge line is never read. When a label
//! field comes after the text, the scan goes on to the end of the line to find it (the text is
//! skipped, not kept), then the text is read from its start again (a seek back).
//!
//! The syntax checks are those of a JSON object with string keys; values other than the text
//! and the labels are skipped with their brackets and strings matched, not fully validated. A
//! key that appears twice: the first text field and the last label value are used.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::json_cursor::{kind, Cursor};
use super::json_escape::unescape;
use super::record::{CorpusOptions, Head, ReadStats};
use super::utf8::decode_part;
use super::{CorpusError, Result};

/// Key names kept for the "no field" message.
const KEYS_SHOWN: usize = 32;

/// The text of a long line, being read.
pub(super) struct LongLine {
    file: PathBuf,
    line: u64,
    line_start: u64,
    /// File offset where the text continues.
    pos: u64,
    /// Bytes of the text read but not yet decoded (a character cut off at the end).
    raw: Vec<u8>,
    /// The text has been read to its closing quote.
    done: bool,
    /// File offset just after the line, once known.
    end: Option<u64>,
}

impl LongLine {
    /// Parses the line that starts at `line_start` (where `reader` stands) up to its text.
    /// `Err(end)` for a blank line (the offset after it); otherwise the record's head and its
    /// text, ready to be read with [`LongLine::more`].
    pub fn start(
        reader: &mut BufReader<File>,
        (file, line, line_start): (&Path, u64, u64),
        options: &CorpusOptions,
        stats: &mut ReadStats,
    ) -> Result<std::result::Result<(Head, LongLine), u64>> {
        let mut c = Cursor {
            reader,
            pos: line_start,
            file,
            line,
            line_start,
        };
        if line == 1 && c.buffer()?.starts_with(b"\xEF\xBB\xBF") {
            c.consume(3);
        }
        c.ws()?;
        match c.peek()? {
            None => return Ok(Err(c.pos)),
            Some(b'\n') => {
                c.consume(1);
                return Ok(Err(c.pos));
            }
            _ => {}
        }
        c.expect(b'{', "`{`")?;
        let lossy = options.lossy;
        let mut labels: Vec<Option<String>> = vec![None; options.label_fields.len()];
        let mut seen = vec![false; labels.len()];
        // None: not seen; Some(None): null; Some(Some(offset)): a string starting there.
        let mut text: Option<Option<u64>> = None;
        let mut keys = Vec::new();
        c.ws()?;
        if c.peek()? == Some(b'}') {
            c.consume(1);
        } else {
            loop {
                c.expect(b'"', "a key string")?;
                let key = c.small_string(lossy, stats)?;
                c.ws()?;
                c.expect(b':', "`:`")?;
                c.ws()?;
                if keys.len() < KEYS_SHOWN {
                    keys.push(key.clone());
                }
                if key == options.text_field && text.is_none() {
                    match c.peek()? {
                        Some(b'"') => {
                            c.consume(1);
                            text = Some(Some(c.pos));
                            if seen.iter().all(|&s| s) {
                                // Every label is known: stream the text from here.
                                let long = LongLine::at(&c, None);
                                return Ok(Ok((Head::new(labels), long)));
                            }
                            c.string(None, 0)?;
                        }
                        Some(b'n') => {
                            c.literal(b"null")?;
                            text = Some(None);
                        }
                        other => {
                            return Err(c.bad_value(format!(
                            "field `{}` is {}, not a string; pick the text field with --text-field",
                            options.text_field,
                            kind(other)
                        )))
                        }
                    }
                } else if let Some(i) = options.label_fields.iter().position(|f| *f == key) {
                    labels[i] = c.label(&key, lossy, stats)?;
                    seen[i] = true;
                } else {
                    c.skip_value()?;
                }
                if c.end_of_member()? {
                    break;
                }
            }
        }
        c.end_of_line()?;
        let end = c.pos;
        match text {
            None => Err(c.bad_value(format!(
                "no field `{}` (fields: {}); pick the text field with --text-field",
                options.text_field,
                keys.join(", ")
            ))),
            Some(None) => {
                let mut long = LongLine::at(&c, Some(end));
                long.done = true;
                Ok(Ok((Head::null(labels), long)))
            }
            Some(Some(at)) => {
                c.seek(at)?;
                Ok(Ok((Head::new(labels), LongLine::at(&c, Some(end)))))
            }
        }
    }

    /// Appends about `max` more bytes of the text to `out` (from `reader`, which stands where
    /// the last call left it); false when the text has ended.
    pub fn more(
        &mut self,
        reader: &mut BufReader<File>,
        out: &mut String,
        max: usize,
        lossy: bool,
        stats: &mut ReadStats,
    ) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let mut c = Cursor {
            reader: &mut *reader,
            pos: self.pos,
            file: &self.file,
            line: self.line,
            line_start: self.line_start,
        };
        let closed = c.string(Some(&mut self.raw), max)?;
        self.pos = c.pos;
        let base = self.pos - self.raw.len() as u64;
        let mut decoded = String::new();
        stats.lossy_replacements +=
            decode_part(&mut self.raw, closed, lossy, &mut decoded, |at| {
                CorpusError::InvalidUtf8 {
                    file: self.file.clone(),
                    line: Some(self.line),
                    row: None,
                    offset: base + at as u64,
                }
            })?;
        unescape(&decoded, out).map_err(|e| self.cursor(reader).bad(&e.to_string()))?;
        if closed {
            self.done = true;
            self.close(reader)?;
        }
        Ok(true)
    }

    /// The offset just after the line, reading what is left of it (text included) if needed.
    pub fn finish(&mut self, reader: &mut BufReader<File>) -> Result<u64> {
        if !self.done {
            let mut c = self.cursor(reader);
            c.string(None, 0)?;
            self.pos = c.pos;
            self.done = true;
        }
        self.close(reader)
    }

    /// After the text's closing quote: scans the rest of the line unless its end is known.
    fn close(&mut self, reader: &mut BufReader<File>) -> Result<u64> {
        if let Some(end) = self.end {
            return Ok(end);
        }
        let mut c = self.cursor(reader);
        while !c.end_of_member()? {
            c.expect(b'"', "a key string")?;
            c.string(None, 0)?;
            c.ws()?;
            c.expect(b':', "`:`")?;
            c.ws()?;
            c.skip_value()?;
        }
        c.end_of_line()?;
        let end = c.pos;
        self.end = Some(end);
        Ok(end)
    }

    /// The long line whose text starts where `c` stands; `end`: the offset after the line, when
    /// already known.
    fn at(c: &Cursor, end: Option<u64>) -> LongLine {
        LongLine {
            file: c.file.into(),
            line: c.line,
            line_start: c.line_start,
            pos: c.pos,
            raw: Vec::new(),
            done: false,
            end,
        }
    }

    fn cursor<'a>(&'a self, reader: &'a mut BufReader<File>) -> Cursor<'a> {
        Cursor {
            reader,
            pos: self.pos,
            file: &self.file,
            line: self.line,
            line_start: self.line_start,
        }
    }
}

impl Head {
    fn new(labels: Vec<Option<String>>) -> Self {
        Head {
            labels,
            has_text: true,
        }
    }

    fn null(labels: Vec<Option<String>>) -> Self {
        Head {
            labels,
            has_text: false,
        }
    }
}
