//! [`Corpus`]: a corpus spec opened for reading, and [`Documents`], its documents streamed one at
//! a time (bounded memory: one file of a .txt corpus, one line of a .jsonl file, one record batch
//! of a parquet file at a time). A document itself is held whole, with its tokens, while it is
//! packed: split a multi-GB text into several files.
//!
//! - `.txt`: one document per file; a UTF-8 byte-order mark is dropped.
//! - `.jsonl`: one JSON object per line; the text is the string field `text_field`; each of
//!   `label_fields` becomes a label (strings as they are, numbers and booleans as their JSON
//!   spelling, missing or null → `None`; arrays and objects are an error). Blank lines are
//!   ignored and are not documents.
//! - `.parquet`: one document per row of the column `text_field` (string or binary), labels
//!   from the columns `label_fields` (strings, integers, floats, booleans, dictionaries of
//!   those), read in record batches. A parquet file lacking a named column is an error at open.
//!
//! A null text counts as an empty document. Empty and whitespace-only documents are skipped and
//! counted; they still take a document index, so `Document::index` is the record's position in
//! the corpus (file order, then line or row order) and leads back to the source.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::parquet::ParquetReader;
use super::source::{corpus_sha256, resolve, CorpusFormat, Source};
use super::{CorpusError, Result};

/// How to read a corpus (the `--text-field`, `--label-field` and `--lossy` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusOptions {
    /// The JSON field or parquet column holding the text (default `text`; unused for .txt).
    pub text_field: String,
    /// JSON fields or parquet columns that become document labels, in this order.
    pub label_fields: Vec<String>,
    /// Replace invalid UTF-8 with U+FFFD (and count it) instead of failing.
    pub lossy: bool,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            text_field: "text".into(),
            label_fields: Vec::new(),
            lossy: false,
        }
    }
}

/// One document of a corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Position of the record in the corpus, counting skipped empty records too.
    pub index: u64,
    /// The text (never empty or whitespace-only).
    pub text: String,
    /// One value per `CorpusOptions::label_fields`, `None` where missing or null.
    pub labels: Vec<Option<String>>,
}

/// Counts kept while reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    /// Documents returned (non-empty).
    pub documents: u64,
    /// Empty, whitespace-only or null-text records skipped.
    pub empty_skipped: u64,
    /// Invalid UTF-8 sequences replaced with U+FFFD (only with `lossy`).
    pub lossy_replacements: u64,
}

/// A corpus spec opened for reading: its format, its files in order and its content hash.
#[derive(Clone, Debug)]
pub struct Corpus {
    spec: String,
    format: CorpusFormat,
    sources: Arc<[Source]>,
    options: Arc<CorpusOptions>,
    sha256: String,
}

impl Corpus {
    /// Resolves `spec` (a folder, glob or file; see [`super::source`]), checks the options
    /// against the format (parquet files must have the named columns) and hashes the corpus.
    ///
    /// Opening reads every file once to compute [`Corpus::sha256`] (streaming, 1 MiB at a
    /// time); the documents are read later, by [`Corpus::documents`].
    pub fn open(spec: impl AsRef<Path>, options: &CorpusOptions) -> Result<Corpus> {
        let spec = spec.as_ref();
        let spec_text = spec.to_string_lossy().into_owned();
        if options.text_field.is_empty() {
            return Err(CorpusError::BadOption {
                flag: "--text-field",
                reason: "is empty; name the JSON field or parquet column that holds the text"
                    .into(),
            });
        }
        let (format, sources) = resolve(spec)?;
        match format {
            CorpusFormat::Txt if !options.label_fields.is_empty() => {
                return Err(CorpusError::BadSpec {
                    spec: spec_text,
                    reason: "a .txt corpus has no label fields; drop --label-field or use .jsonl / parquet".into(),
                })
            }
            CorpusFormat::Parquet => {
                for source in sources.iter() {
                    ParquetReader::check(&source.path, options)?;
                }
            }
            _ => {}
        }
        let sha256 = corpus_sha256(&sources)?;
        Ok(Corpus {
            spec: spec_text,
            format,
            sources: sources.into(),
            options: Arc::new(options.clone()),
            sha256,
        })
    }

    /// The spec as given.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The corpus format.
    pub fn format(&self) -> CorpusFormat {
        self.format
    }

    /// The files, in reading order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// SHA-256 of the corpus content (lowercase hex); see [`super::source::corpus_sha256`].
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The options it was opened with.
    pub fn options(&self) -> &CorpusOptions {
        &self.options
    }

    /// A fresh stream of the documents, from the first file.
    pub fn documents(&self) -> Documents {
        Documents {
            spec: self.spec.clone(),
            format: self.format,
            sources: self.sources.clone(),
            options: self.options.clone(),
            next_source: 0,
            current: None,
            next_index: 0,
            stats: ReadStats::default(),
            finished: false,
        }
    }
}

/// The documents of a corpus, in order, one at a time. After an error it yields nothing more.
pub struct Documents {
    spec: String,
    format: CorpusFormat,
    sources: Arc<[Source]>,
    options: Arc<CorpusOptions>,
    next_source: usize,
    current: Option<Reader>,
    next_index: u64,
    stats: ReadStats,
    finished: bool,
}

/// One record as a reader found it, before the empty check.
pub(super) struct Record {
    /// `None` for a null text.
    pub text: Option<String>,
    pub labels: Vec<Option<String>>,
    /// Invalid UTF-8 sequences replaced in this record.
    pub replacements: u64,
}

/// The reader of the file being read.
enum Reader {
    /// A .txt file is one record, handed out once.
    Txt(Option<Record>),
    Jsonl(JsonlReader),
    Parquet(Box<ParquetReader>),
}

impl Documents {
    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The label fields, in the order of `Document::labels`.
    pub fn label_fields(&self) -> &[String] {
        &self.options.label_fields
    }

    /// The corpus spec (for error messages downstream).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The next record of the corpus, opening files as needed; `None` at the end.
    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            let record = match &mut self.current {
                None => {
                    let Some(source) = self.sources.get(self.next_source) else {
                        return Ok(None);
                    };
                    self.next_source += 1;
                    self.current = Some(self.open(&source.path.clone())?);
                    continue;
                }
                Some(Reader::Txt(record)) => record.take(),
                Some(Reader::Jsonl(reader)) => reader.next_record(&self.options)?,
                Some(Reader::Parquet(reader)) => reader.next_record(self.options.lossy)?,
            };
            match record {
                Some(record) => return Ok(Some(record)),
                None => self.current = None,
            }
        }
    }

    fn open(&self, path: &Path) -> Result<Reader> {
        Ok(match self.format {
            CorpusFormat::Txt => {
                let mut bytes = std::fs::read(path).map_err(|e| CorpusError::io(path, e))?;
                let bom = strip_bom(&mut bytes);
                let (text, replacements) = decode_utf8(bytes, self.options.lossy, |offset| {
                    CorpusError::InvalidUtf8 {
                        file: path.into(),
                        line: None,
                        row: None,
                        offset: (bom + offset) as u64,
                    }
                })?;
                Reader::Txt(Some(Record {
                    text: Some(text),
                    labels: Vec::new(),
                    replacements,
                }))
            }
            CorpusFormat::Jsonl => Reader::Jsonl(JsonlReader::open(path)?),
            CorpusFormat::Parquet => {
                Reader::Parquet(Box::new(ParquetReader::open(path, &self.options)?))
            }
        })
    }
}

impl Iterator for Documents {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let record = match self.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            };
            let index = self.next_index;
            self.next_index += 1;
            self.stats.lossy_replacements += record.replacements;
            match record.text {
                Some(text) if !text.trim().is_empty() => {
                    self.stats.documents += 1;
                    return Some(Ok(Document {
                        index,
                        text,
                        labels: record.labels,
                    }));
                }
                _ => self.stats.empty_skipped += 1,
            }
        }
        None
    }
}

/// Drops a leading UTF-8 byte-order mark; returns how many bytes were dropped (0 or 3).
fn strip_bom(bytes: &mut Vec<u8>) -> usize {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
        3
    } else {
        0
    }
}

/// UTF-8 text from bytes: with `lossy`, invalid sequences become U+FFFD and are counted;
/// without, the first bad byte's offset goes to `error`.
pub(super) fn decode_utf8(
    bytes: Vec<u8>,
    lossy: bool,
    error: impl FnOnce(usize) -> CorpusError,
) -> Result<(String, u64)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok((text, 0)),
        Err(e) if !lossy => Err(error(e.utf8_error().valid_up_to())),
        Err(e) => {
            let bytes = e.into_bytes();
            let replacements = bytes
                .utf8_chunks()
                .filter(|chunk| !chunk.invalid().is_empty())
                .count() as u64;
            Ok((String::from_utf8_lossy(&bytes).into_owned(), replacements))
        }
    }
}

/// Reads a .jsonl file line by line.
struct JsonlReader {
    file: PathBuf,
    reader: BufReader<File>,
    /// 1-based number of the last line read.
    line: u64,
    /// Byte offset of the next line.
    offset: u64,
    buf: Vec<u8>,
}

impl JsonlReader {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| CorpusError::io(path, e))?;
        Ok(JsonlReader {
            file: path.into(),
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            offset: 0,
            buf: Vec::new(),
        })
    }

    fn next_record(&mut self, options: &CorpusOptions) -> Result<Option<Record>> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| CorpusError::io(&self.file, e))?;
            if n == 0 {
                return Ok(None);
            }
            let mut start = self.offset;
            self.offset += n as u64;
            self.line += 1;
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
            return self.parse(&text, options).map(|(text, labels)| {
                Some(Record {
                    text,
                    labels,
                    replacements,
                })
            });
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
