//! [`Corpus`]: a corpus spec opened for reading; [`Pieces`], its text streamed in pieces of at most
//! [`PIECE_BYTES`] bytes, and [`Documents`], the same stream joined back into whole documents.
//!
//! Memory stays bounded whatever the corpus: a .txt file is read [`PIECE_BYTES`] at a time, a
//! .jsonl line longer than [`LONG_LINE`] bytes is parsed in place in the file (see
//! [`super::json_line`]), and a parquet file one record batch at a time. The packer reads
//! [`Pieces`], so one document of any length (a 100 MB single-line text) is tokenized a piece
//! at a time, and reading stops as soon as `--max-tokens` is reached.
//!
//! A piece ends where whitespace follows a non-whitespace character (see [`cut_point`]): for
//! GPT-2's byte-level BPE and BERT's WordPiece every such place is also a boundary of the
//! tokenizer's own pre-tokenization, so tokenizing piece by piece gives exactly the tokens of
//! the whole document. Only a run of more than [`PIECE_BYTES`] bytes without such a place (a
//! megabyte-long "word", or of whitespace) is cut at a character boundary inside it; the tokens
//! at that cut may differ from whole-document tokenization.
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

use std::path::Path;
use std::sync::Arc;

use super::held::Held;
use super::jsonl::JsonlReader;
pub use super::jsonl::LONG_LINE;
use super::parquet::ParquetReader;
use super::record::{CorpusOptions, Head, ReadStats};
use super::source::{corpus_sha256, resolve, CorpusFormat, Source};
use super::txt::TxtReader;
use super::{CorpusError, Result};

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
            pieces: self.pieces(),
            ahead: None,
        }
    }

    /// A fresh stream of the documents' text in pieces, from the first file.
    pub fn pieces(&self) -> Pieces {
        Pieces {
            spec: self.spec.clone(),
            format: self.format,
            sources: self.sources.clone(),
            options: self.options.clone(),
            next_source: 0,
            current: None,
            next_index: 0,
            stats: ReadStats::default(),
            finished: false,
            pending: String::new(),
            text_done: true,
            in_document: None,
        }
    }
}

/// Longest piece of text handed to the tokenizer at once (see [`cut_point`]).
pub const PIECE_BYTES: usize = 16 << 10;

/// Leading whitespace read, at most, to tell an empty (whitespace-only) document from one with
/// text; a document that starts with more whitespace than this counts as non-empty.
const MAX_LEADING_WHITESPACE: usize = 1 << 20;

/// Bytes the readers take from a file at least per call (so a piece never waits on tiny reads).
const MIN_READ: usize = 4096;

/// A piece of a document's text, at most [`PIECE_BYTES`] bytes (plus a few bytes, to end on a
/// character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The document's `Document::index`.
    pub index: u64,
    /// The document's labels on its first piece; `None` on the pieces that continue it.
    pub labels: Option<Vec<Option<String>>>,
    /// The text (never empty).
    pub text: String,
}

/// The documents' text, in order, in pieces (see the module docs). After an error it yields
/// nothing more.
pub struct Pieces {
    spec: String,
    format: CorpusFormat,
    sources: Arc<[Source]>,
    options: Arc<CorpusOptions>,
    next_source: usize,
    current: Option<Reader>,
    next_index: u64,
    stats: ReadStats,
    finished: bool,
    /// Text read but not yet handed out.
    pending: String,
    /// The reader has no more text of the current record.
    text_done: bool,
    /// The document being handed out, while it has text left.
    in_document: Option<u64>,
}

/// The reader of the file being read.
enum Reader {
    Txt(TxtReader),
    Jsonl(JsonlReader),
    Parquet(Box<ParquetReader>, Held),
}

impl Pieces {
    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The label fields, in the order of `Piece::labels`.
    pub fn label_fields(&self) -> &[String] {
        &self.options.label_fields
    }

    /// The corpus spec (for error messages downstream).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The next piece: of the current document while it has text, else the first of the next
    /// non-empty document.
    fn next_piece(&mut self) -> Result<Option<Piece>> {
        if let Some(index) = self.in_document {
            self.fill(PIECE_BYTES + 1)?;
            if !self.pending.is_empty() {
                let text = self.cut();
                return Ok(Some(Piece {
                    index,
                    labels: None,
                    text,
                }));
            }
            self.in_document = None;
        }
        loop {
            let Some(head) = self.next_head()? else {
                return Ok(None);
            };
            let index = self.next_index;
            self.next_index += 1;
            self.pending.clear();
            self.text_done = !head.has_text;
            // Read until the text shows a non-whitespace character (or ends).
            let mut checked = 0;
            let mut found = false;
            while !self.text_done && !found && self.pending.len() < MAX_LEADING_WHITESPACE {
                self.more(MIN_READ)?;
                found = !self.pending[checked..].trim_start().is_empty();
                checked = self.pending.len();
            }
            if !found && self.text_done {
                self.stats.empty_skipped += 1;
                self.drain()?;
                continue;
            }
            self.stats.documents += 1;
            self.in_document = Some(index);
            self.fill(PIECE_BYTES + 1)?;
            let text = self.cut();
            return Ok(Some(Piece {
                index,
                labels: Some(head.labels),
                text,
            }));
        }
    }

    /// Reads more of the current record's text until `pending` holds `target` bytes or the
    /// text ends.
    fn fill(&mut self, target: usize) -> Result<()> {
        while !self.text_done && self.pending.len() < target {
            self.more(target - self.pending.len())?;
        }
        Ok(())
    }

    /// Reads what is left of the current record's text and drops it.
    fn drain(&mut self) -> Result<()> {
        while !self.text_done {
            self.pending.clear();
            self.more(PIECE_BYTES)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Appends about `max` more bytes of the current record's text to `pending`.
    fn more(&mut self, max: usize) -> Result<()> {
        let max = max.max(MIN_READ);
        let lossy = self.options.lossy;
        let more = match &mut self.current {
            Some(Reader::Txt(r)) => r.more(&mut self.pending, max, lossy, &mut self.stats)?,
            Some(Reader::Jsonl(r)) => r.more(&mut self.pending, max, lossy, &mut self.stats)?,
            Some(Reader::Parquet(_, held)) => held.more(&mut self.pending, max),
            None => false,
        };
        self.text_done = !more;
        Ok(())
    }

    /// Takes the next piece off `pending` (all of it at the end of the text).
    fn cut(&mut self) -> String {
        if self.text_done && self.pending.len() <= PIECE_BYTES {
            return std::mem::take(&mut self.pending);
        }
        let at = cut_point(&self.pending, PIECE_BYTES);
        let rest = self.pending.split_off(at);
        std::mem::replace(&mut self.pending, rest)
    }

    /// The start of the next record of the corpus, opening files as needed; `None` at the end.
    fn next_head(&mut self) -> Result<Option<Head>> {
        loop {
            let head = match &mut self.current {
                None => {
                    let Some(source) = self.sources.get(self.next_source) else {
                        return Ok(None);
                    };
                    self.next_source += 1;
                    self.current = Some(self.open(&source.path.clone())?);
                    continue;
                }
                Some(Reader::Txt(reader)) => reader.start(),
                Some(Reader::Jsonl(reader)) => reader.start(&self.options, &mut self.stats)?,
                Some(Reader::Parquet(reader, held)) => {
                    match reader.next_record(self.options.lossy)? {
                        None => None,
                        Some(record) => {
                            self.stats.lossy_replacements += record.replacements;
                            let has_text = record.text.is_some();
                            *held = Held::new(record.text.unwrap_or_default());
                            Some(Head {
                                labels: record.labels,
                                has_text,
                            })
                        }
                    }
                }
            };
            match head {
                Some(head) => return Ok(Some(head)),
                None => self.current = None,
            }
        }
    }

    fn open(&self, path: &Path) -> Result<Reader> {
        Ok(match self.format {
            CorpusFormat::Txt => Reader::Txt(TxtReader::open(path)?),
            CorpusFormat::Jsonl => Reader::Jsonl(JsonlReader::open(path)?),
            CorpusFormat::Parquet => Reader::Parquet(
                Box::new(ParquetReader::open(path, &self.options)?),
                Held::new(String::new()),
            ),
        })
    }
}

impl Iterator for Pieces {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = self.next_piece().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.finished = true;
        }
        next
    }
}

/// Where to end a piece of `text` (longer than `max` bytes): the last place at or before `max`
/// where a whitespace character follows a non-whitespace one, so the next piece starts with
/// the whitespace. GPT-2's pre-tokenizer never joins a non-whitespace character to the
/// whitespace after it (a space joins the word that follows it), and BERT's splits at every
/// whitespace, so this place is a token boundary of the whole text too. Without such a place
/// (a run of `max` bytes of one kind), the last character boundary at or before `max`.
pub fn cut_point(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut next_is_space = text[end..].starts_with(char::is_whitespace);
    for (i, c) in text[..end].char_indices().rev() {
        let space = c.is_whitespace();
        if next_is_space && !space {
            return i + c.len_utf8();
        }
        next_is_space = space;
    }
    if end == 0 {
        // `max` is shorter than the first character: take that character.
        text.char_indices().nth(1).map_or(text.len(), |(i, _)| i)
    } else {
        end
    }
}

/// The documents of a corpus, in order, one at a time, each whole: [`Pieces`] joined back. The
/// packer reads the pieces instead, so that a document's length does not bound memory.
pub struct Documents {
    pieces: Pieces,
    /// The first piece of the next document, read while joining the previous one.
    ahead: Option<Piece>,
}

impl Documents {
    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        self.pieces.stats()
    }

    /// The label fields, in the order of `Document::labels`.
    pub fn label_fields(&self) -> &[String] {
        self.pieces.label_fields()
    }

    /// The corpus spec (for error messages downstream).
    pub fn spec(&self) -> &str {
        self.pieces.spec()
    }

    /// The same stream in pieces, from where this one stands (no document read yet).
    pub fn into_pieces(self) -> Pieces {
        self.pieces
    }
}

impl Iterator for Documents {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.ahead.take() {
            Some(piece) => piece,
            None => match self.pieces.next()? {
                Ok(piece) => piece,
                Err(e) => return Some(Err(e)),
            },
        };
        let mut document = Document {
            index: first.index,
            text: first.text,
            labels: first.labels.unwrap_or_default(),
        };
        loop {
            match self.pieces.next() {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(piece)) if piece.labels.is_some() => {
                    self.ahead = Some(piece);
                    break;
                }
                Some(Ok(piece)) => document.text.push_str(&piece.text),
            }
        }
        Some(Ok(document))
    }
}
