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
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::record::{CorpusOptions, Head, ReadStats};
use super::utf8::decode_part;
use super::{CorpusError, Result};

/// Longest key or label value read (they are held whole).
const SMALL_STRING: usize = 1 << 20;

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
                                let long = c.long_line(None);
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
                let mut long = c.long_line(Some(end));
                long.done = true;
                Ok(Ok((Head::null(labels), long)))
            }
            Some(Some(at)) => {
                c.seek(at)?;
                Ok(Ok((Head::new(labels), c.long_line(Some(end)))))
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
        unescape(&decoded, out).map_err(|reason| self.cursor(reader).bad(&reason))?;
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

/// A position in the line being parsed.
struct Cursor<'a> {
    reader: &'a mut BufReader<File>,
    /// File offset of the next byte.
    pos: u64,
    file: &'a Path,
    line: u64,
    line_start: u64,
}

impl Cursor<'_> {
    fn long_line(&self, end: Option<u64>) -> LongLine {
        LongLine {
            file: self.file.into(),
            line: self.line,
            line_start: self.line_start,
            pos: self.pos,
            raw: Vec::new(),
            done: false,
            end,
        }
    }

    fn buffer(&mut self) -> Result<&[u8]> {
        self.reader
            .fill_buf()
            .map_err(|e| CorpusError::io(self.file, e))
    }

    fn peek(&mut self) -> Result<Option<u8>> {
        Ok(self.buffer()?.first().copied())
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.pos += n as u64;
    }

    fn seek(&mut self, at: u64) -> Result<()> {
        self.reader
            .seek(SeekFrom::Start(at))
            .map_err(|e| CorpusError::io(self.file, e))?;
        self.pos = at;
        Ok(())
    }

    /// A syntax error at the cursor, in the words of the short-line path.
    fn bad(&self, what: &str) -> CorpusError {
        self.bad_value(format!(
            "not a JSON object ({what} at column {}); each line must be one object such as {{\"text\": \"...\"}}",
            self.pos - self.line_start + 1
        ))
    }

    fn bad_value(&self, reason: String) -> CorpusError {
        CorpusError::BadJsonl {
            file: self.file.into(),
            line: self.line,
            reason,
        }
    }

    /// The next byte of the line, consumed; an error at the end of the line.
    fn byte(&mut self) -> Result<u8> {
        match self.peek()? {
            None | Some(b'\n') => Err(self.bad("the line ends too early")),
            Some(b) => {
                self.consume(1);
                Ok(b)
            }
        }
    }

    /// Skips JSON whitespace (the line's newline ends it).
    fn ws(&mut self) -> Result<()> {
        while let Some(b' ' | b'\t' | b'\r') = self.peek()? {
            self.consume(1);
        }
        Ok(())
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<()> {
        if self.peek()? == Some(b) {
            self.consume(1);
            Ok(())
        } else {
            Err(self.bad(&format!("expected {what}")))
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        for &b in word {
            if self.byte()? != b {
                return Err(self.bad("expected a value"));
            }
        }
        Ok(())
    }

    /// After an object member: true at the closing `}`, false after a `,` (both consumed).
    fn end_of_member(&mut self) -> Result<bool> {
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
    fn end_of_line(&mut self) -> Result<()> {
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
    fn string(&mut self, mut raw: Option<&mut Vec<u8>>, max: usize) -> Result<bool> {
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
    fn small_string(&mut self, lossy: bool, stats: &mut ReadStats) -> Result<String> {
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
        unescape(&decoded, &mut out).map_err(|reason| self.bad(&reason))?;
        Ok(out)
    }

    /// A label value: strings as they are, numbers and booleans as their JSON spelling, null
    /// as `None` (as the short-line path reads them).
    fn label(&mut self, field: &str, lossy: bool, stats: &mut ReadStats) -> Result<Option<String>> {
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
    fn skip_value(&mut self) -> Result<()> {
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
    let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    let mut i = 0;
    while let Some(block) = buf.get(i..i + 32) {
        if block.iter().fold(false, |any, &b| any | special(b)) {
            break;
        }
        i += 32;
    }
    i + buf[i..]
        .iter()
        .position(|&b| special(b))
        .unwrap_or(buf.len() - i)
}

/// What a value that starts with this byte is, for messages.
fn kind(first: Option<u8>) -> &'static str {
    match first {
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        Some(b't' | b'f') => "a boolean",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "not a JSON value",
    }
}

fn is_high_surrogate(u: u32) -> bool {
    (0xD800..0xDC00).contains(&u)
}

/// The value of 4 hex digits.
fn hex4(digits: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(digits.get(..4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// Decodes the JSON escapes of a string body (complete escapes only, as [`Cursor::string`]
/// leaves them) onto `out`.
fn unescape(raw: &str, out: &mut String) -> std::result::Result<(), String> {
    let bytes = raw.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[start..i]);
        let escape = *bytes.get(i + 1).ok_or("a cut escape")?;
        i += 2;
        let c = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let bad = || "an invalid \\u escape".to_string();
                let hi = hex4(bytes.get(i..).ok_or_else(bad)?).ok_or_else(bad)?;
                i += 4;
                let code = if is_high_surrogate(hi) {
                    let lo = bytes
                        .get(i..i + 2)
                        .filter(|b| *b == b"\\u")
                        .and_then(|_| hex4(bytes.get(i + 2..)?))
                        .filter(|lo| (0xDC00..0xE000).contains(lo))
                        .ok_or("a lone leading surrogate in a \\u escape")?;
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or("a lone trailing surrogate in a \\u escape")?
            }
            _ => return Err("an invalid escape".into()),
        };
        out.push(c);
        start = i;
    }
    out.push_str(&raw[start..]);
    Ok(())
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

    #[test]
    fn unescape_decodes_every_escape() {
        let mut out = String::new();
        unescape(r#"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00z"#, &mut out).unwrap();
        assert_eq!(out, "a\"b\\c/d\u{8}\u{c}\n\r\té😀z");
        assert!(unescape(r"\ud83d", &mut String::new()).is_err());
        assert!(unescape(r"\ude00", &mut String::new()).is_err());
        assert!(unescape(r"\x", &mut String::new()).is_err());
    }
}
