//! [`JsonlReader`]: a .jsonl file, one JSON object per line; a line longer than [`LONG_LINE`]
//! is parsed in place (see [`super::json_line`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::held::Held;
use super::json_line::LongLine;
use super::record::{CorpusOptions, Head, ReadStats};
use super::txt::strip_bom;
use super::utf8::decode_utf8;
use super::{CorpusError, Result};

/// A .jsonl line longer than this is parsed in place in the file, its text read a piece at a
/// time, instead of being read whole.
pub const LONG_LINE: usize = 1 << 20;

/// Reads a .jsonl file line by line; a line longer than [`LONG_LINE`] is read in place.
pub(super) struct JsonlReader {
    file: PathBuf,
    reader: BufReader<File>,
    /// 1-based number of the last line read.
    line: u64,
    /// Byte offset of the next line.
    offset: u64,
    buf: Vec<u8>,
    text: JsonlText,
}

/// The text of the current line.
enum JsonlText {
    Held(Held),
    Long(LongLine),
}

impl JsonlReader {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| CorpusError::io(path, e))?;
        Ok(JsonlReader {
            file: path.into(),
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            offset: 0,
            buf: Vec::new(),
            text: JsonlText::Held(Held::new(String::new())),
        })
    }

    /// Appends about `max` more bytes of the current line's text to `out`; false at its end.
    pub(super) fn more(
        &mut self,
        out: &mut String,
        max: usize,
        lossy: bool,
        stats: &mut ReadStats,
    ) -> Result<bool> {
        match &mut self.text {
            JsonlText::Held(held) => Ok(held.more(out, max)),
            JsonlText::Long(long) => long.more(&mut self.reader, out, max, lossy, stats),
        }
    }

    /// The start of the next record (blank lines skipped); `None` at the end of the file.
    pub(super) fn start(
        &mut self,
        options: &CorpusOptions,
        stats: &mut ReadStats,
    ) -> Result<Option<Head>> {
        if let JsonlText::Long(long) = &mut self.text {
            // Go on after the long line, whose text may not have been read to its end.
            let end = long.finish(&mut self.reader)?;
            self.reader
                .seek(SeekFrom::Start(end))
                .map_err(|e| CorpusError::io(&self.file, e))?;
            self.offset = end;
            self.text = JsonlText::Held(Held::new(String::new()));
        }
        loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(LONG_LINE as u64)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| CorpusError::io(&self.file, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if n == LONG_LINE && self.buf.last() != Some(&b'\n') {
                self.reader
                    .seek(SeekFrom::Start(self.offset))
                    .map_err(|e| CorpusError::io(&self.file, e))?;
                let line = (self.file.as_path(), self.line, self.offset);
                match LongLine::start(&mut self.reader, line, options, stats)? {
                    Err(end) => {
                        self.offset = end; // a blank line
                        continue;
                    }
                    Ok((head, long)) => {
                        self.text = JsonlText::Long(long);
                        return Ok(Some(head));
                    }
                }
            }
            let mut start = self.offset;
            self.offset += n as u64;
            let mut bytes = std::mem::take(&mut self.buf);
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if self.line == 1 {
                start += strip_bom(&mut bytes) as u64;
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = self.line;
            let (text, replacements) =
                decode_utf8(bytes, options.lossy, |offset| CorpusError::InvalidUtf8 {
                    file: self.file.clone(),
                    line: Some(line),
                    row: None,
                    offset: start + offset as u64,
                })?;
            stats.lossy_replacements += replacements;
            let (text, labels) = self.parse(&text, options)?;
            let has_text = text.is_some();
            self.text = JsonlText::Held(Held::new(text.unwrap_or_default()));
            return Ok(Some(Head { labels, has_text }));
        }
    }

    /// The text and labels of one line.
    fn parse(
        &self,
        line: &str,
        options: &CorpusOptions,
    ) -> Result<(Option<String>, Vec<Option<String>>)> {
        let bad = |reason: String| CorpusError::BadJsonl {
            file: self.file.clone(),
            line: self.line,
            reason,
        };
        let mut object: serde_json::Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| {
                bad(format!(
                    "not a JSON object ({e}); each line must be one object such as {{\"{}\": \"...\"}}",
                    options.text_field
                ))
            })?;
        let text = match object.remove(&options.text_field) {
            Some(Value::String(text)) => Some(text),
            Some(Value::Null) => None,
            Some(other) => {
                return Err(bad(format!(
                    "field `{}` is {}, not a string; pick the text field with --text-field",
                    options.text_field,
                    json_kind(&other)
                )))
            }
            None => {
                let keys: Vec<&str> = object.keys().map(String::as_str).collect();
                return Err(bad(format!(
                    "no field `{}` (fields: {}); pick the text field with --text-field",
                    options.text_field,
                    keys.join(", ")
                )));
            }
        };
        let labels = options
            .label_fields
            .iter()
            .map(|field| match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                Some(other) => Err(bad(format!(
                    "label field `{field}` is {}; labels must be strings, numbers or booleans",
                    json_kind(other)
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((text, labels))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
