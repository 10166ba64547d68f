//! [`Cursor`]: a position in a JSON line being parsed in place in the file, and the scanning
//! steps of the long-line reader ([`super::json_line`]): bytes, whitespace, punctuation, strings
//! read in pieces, label values, and values skipped with their brackets matched.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use super::json_escape::{hex4, is_high_surrogate, unescape};
use super::record::ReadStats;
use super::utf8::decode_part;
use super::{CorpusError, Result};

/// Longest key or label value read (they are held whole).
const SMALL_STRING: usize = 1 << 20;

/// A position in the line being parsed.
pub(super) struct Cursor<'a> {
    pub(super) reader: &'a mut BufReader<File>,
    /// File offset of the next byte.
    pub(super) pos: u64,
    pub(super) file: &'a Path,
    pub(super) line: u64,
    pub(super) line_start: u64,
}

impl Cursor<'_> {
    pub(super) fn buffer(&mut self) -> Result<&[u8]> {
        self.reader
            .fill_buf()
            .map_err(|e| CorpusError::io(self.file, e))
    }

    pub(super) fn peek(&mut self) -> Result<Option<u8>> {
        Ok(self.buffer()?.first().copied())
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.pos += n as u64;
    }

    pub(super) fn seek(&mut self, at: u64) -> Result<()> {
        self.reader
            .seek(SeekFrom::Start(at))
            .map_err(|e| CorpusError::io(self.file, e))?;
        self.pos = at;
        Ok(())
    }

    /// A syntax error at the cursor, in the words of the short-line path.
    pub(super) fn bad(&self, what: &str) -> CorpusError {
        self.bad_value(format!(
            "not a JSON object ({what} at column {}); each line must be one object such as {{\"text\": \"...\"}}",
            self.pos - self.line_start + 1
        ))
    }

    pub(super) fn bad_value(&self, reason: String) -> CorpusError {
        CorpusError::BadJsonl {
            file: self.file.into(),
            line: self.line,
            reason,
        }
    }

    /// The next byte of the line, consumed; an error at the end of the line.
    pub(super) fn byte(&mut self) -> Result<u8> {
        match self.peek()? {
            None | Some(b'\n') => Err(self.bad("the line ends too early")),
            Some(b) => {
                self.consume(1);
                Ok(b)
            }
        }
    }

    /// Skips JSON whitespace (the line's newline ends it).
    pub(super) fn ws(&mut self) -> Result<()> {
        while let Some(b' ' | b'\t' | b'\r') = self.peek()? {
            self.consume(1);
        }
        Ok(())
    }

    pub(super) fn expect(&mut self, b: u8, what: &str) -> Result<()> {
        if self.peek()? == Some(b) {
            self.consume(1);
            Ok(())
        } else {
            Err(self.bad(&format!("expected {what}")))
        }
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Result<()> {
        for &b in word {
            if self.byte()? != b {
                return Err(self.bad("expected a value"));
            }
        }
        Ok(())
    }

    /// After an object member: true at the closing `}`, false after a `,` (both consumed).
    pub(super) fn end_of_member(&mut self) -> Result<bool> {
        self.ws()?;
        match self.byte()? {
            b'}' => Ok(true),
            b',' => {
                self.ws()?;
                Ok(false)
            }
            _ => Err(self.bad("expected `,` or `}`")),
        }
    }

    /// After the object: nothing but whitespace up to the newline (consumed) or the file's end.
    pub(super) fn end_of_line(&mut self) -> Result<()> {
        self.ws()?;
        match self.peek()? {
            None => Ok(()),
            Some(b'\n') => {
                self.consume(1);
                Ok(())
            }
            Some(_) => Err(self.bad("trailing characters")),
        }
    }

    /// Reads a string's body (after its opening quote), escapes left as they are, onto `raw` if
    /// given. Stops once `raw` holds `max` bytes (never inside an escape, nor between the two
    /// halves of a surrogate pair) or after the closing quote; true when the string ended.
    pub(super) fn string(&mut self, mut raw: Option<&mut Vec<u8>>, max: usize) -> Result<bool> {
        let mut hold = false;
        loop {
            if let Some(raw) = &raw {
                if !hold && raw.len() >= max {
                    return Ok(false);
                }
            }
            let buf = self.buffer()?;
            if buf.is_empty() {
                return Err(self.bad("the line ends inside a string"));
            }
            let mut run = plain_run(buf);
            if let Some(raw) = &mut raw {
                run = run.min(max.saturating_sub(raw.len()).max(1));
                raw.extend_from_slice(&buf[..run]);
            }
            if run > 0 {
                self.consume(run);
                hold = false;
                continue;
            }
            match self.byte()? {
                b'"' => return Ok(true),
                b'\\' => {
                    let e = self.byte()?;
                    let mut escape = vec![b'\\', e];
                    if e == b'u' {
                        for _ in 0..4 {
                            escape.push(self.byte()?);
                        }
                    }
                    hold = e == b'u' && hex4(&escape[2..]).is_some_and(is_high_surrogate);
                    if let Some(raw) = &mut raw {
                        raw.extend_from_slice(&escape);
                    }
                }
                _ => return Err(self.bad("a control character inside a string")),
            }
        }
    }

    /// A key or label string (after its opening quote), decoded.
    pub(super) fn small_string(&mut self, lossy: bool, stats: &mut ReadStats) -> Result<String> {
        let mut raw = Vec::new();
        if !self.string(Some(&mut raw), SMALL_STRING)? {
            return Err(self.bad("a key or label string longer than 1 MiB"));
        }
        let base = self.pos - 1 - raw.len() as u64;
        let mut decoded = String::new();
        stats.lossy_replacements += decode_part(&mut raw, true, lossy, &mut decoded, |at| {
            CorpusError::InvalidUtf8 {
                file: self.file.into(),
                line: Some(self.line),
                row: None,
                offset: base + at as u64,
            }
        })?;
        let mut out = String::new();
        unescape(&decoded, &mut out).map_err(|e| self.bad(&e.to_string()))?;
        Ok(out)
    }

    /// A label value: strings as they are, numbers and booleans as their JSON spelling, null
    /// as `None` (as the short-line path reads them).
    pub(super) fn label(
        &mut self,
        field: &str,
        lossy: bool,
        stats: &mut ReadStats,
    ) -> Result<Option<String>> {
        match self.peek()? {
            Some(b'"') => {
                self.consume(1);
                Ok(Some(self.small_string(lossy, stats)?))
            }
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b't') => self.literal(b"true").map(|()| Some("true".into())),
            Some(b'f') => self.literal(b"false").map(|()| Some("false".into())),
            Some(b'-' | b'0'..=b'9') => {
                let mut token = String::new();
                while let Some(b @ (b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) =
                    self.peek()?
                {
                    if token.len() > 64 {
                        return Err(self.bad("a number too long"));
                    }
                    token.push(b as char);
                    self.consume(1);
                }
                let number: serde_json::Number =
                    serde_json::from_str(&token).map_err(|_| self.bad("expected a number"))?;
                Ok(Some(number.to_string()))
            }
            other @ Some(b'[' | b'{') => Err(self.bad_value(format!(
                "label field `{field}` is {}; labels must be strings, numbers or booleans",
                kind(other)
            ))),
            _ => Err(self.bad("expected a value")),
        }
    }

    /// Skips one value: strings and brackets matched, anything else passed over.
    pub(super) fn skip_value(&mut self) -> Result<()> {
        let mut depth = 0usize;
        let mut any = false;
        loop {
            match self.peek()? {
                None | Some(b'\n') => return Err(self.bad("the line ends inside a value")),
                Some(b',') if depth == 0 => break,
                Some(b']' | b'}') if depth == 0 => break,
                Some(b'"') => {
                    self.consume(1);
                    self.string(None, 0)?;
                }
                Some(b'[' | b'{') => {
                    self.consume(1);
                    depth += 1;
                }
                Some(b']' | b'}') => {
                    self.consume(1);
                    depth -= 1;
                }
                Some(_) => self.consume(1),
            }
            any = true;
        }
        if any {
            Ok(())
        } else {
            Err(self.bad("expected a value"))
        }
    }
}

/// Length of the leading bytes of a string body that need no attention (not a quote, a
/// backslash or a control character). Checks 32 bytes per step, which the compiler turns into a
/// few vector instructions: skipping a 100 MB text to find a label after it runs at memory speed.
fn plain_run(buf: &[u8]) -> usize {
    // memchr's SIMD search finds the first quote or backslash (gigabytes per second: this scan
    // is what skipping a 100 MB text to reach a label after it costs); a raw control byte,
    // invalid inside a string, matters only before that point and is looked for in 32-byte
    // blocks the compiler vectorises.
    let end = memchr::memchr2(b'"', b'\\', buf).unwrap_or(buf.len());
    let head = &buf[..end];
    let control = |b: &u8| *b < 0x20;
    let mut i = 0;
    while let Some(block) = head.get(i..i + 32) {
        if block.iter().fold(false, |any, b| any | control(b)) {
            break;
        }
        i += 32;
    }
    i + head[i..].iter().position(control).unwrap_or(end - i)
}

/// What a value that starts with this byte is, for messages.
pub(super) fn kind(first: Option<u8>) -> &'static str {
    match first {
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        Some(b't' | b'f') => "a boolean",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "not a JSON value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_run_stops_at_the_first_quote_backslash_or_control_byte() {
        let mut text = vec![b'a'; 100];
        assert_eq!(plain_run(&text), 100);
        for (at, b) in [(0, b'"'), (31, b'\\'), (32, b'\n'), (70, 0x1F), (99, b'"')] {
            let saved = text[at];
            text[at] = b;
            assert_eq!(plain_run(&text), at);
            text[at] = saved;
        }
    }
}
