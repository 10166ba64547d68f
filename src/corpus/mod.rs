//! The corpus stage of `unravel extract`: read documents from text files, JSON lines or parquet,
//! tokenize them and pack the token stream into fixed-length contexts.
//!
//! ```text
//! Corpus::open(spec)  ──documents()──▶  Document { index, text, labels }   (one at a time)
//!       ──Packer (batched, parallel tokenization)──▶  Context { id, tokens[ctx], special, doc, labels }
//! ```
//!
//! - [`source`]: which files a corpus spec (folder, glob or file) names, in a fixed order, and the
//!   corpus hash; `hf://datasets/...` specs go through [`crate::hub::dataset`].
//! - [`read`]: [`Corpus`] and the streaming document readers (txt, jsonl, parquet).
//! - [`pack`]: [`Packer`], the BOS / separator rules and the scale-out and resume helpers.
//! - [`token_text`]: [`TokenText`], the readable text of each token id for the shards.
//!
//! This stage is the leftmost one: it imports no other stage of unravel. It takes the tokenizer
//! as a `tokenizer.json` path (what `TextTokenizer::path()` returns).

use std::path::PathBuf;

mod held;
mod json_cursor;
mod json_escape;
mod json_line;
mod jsonl;
pub mod pack;
mod pack_options;
mod parquet;
pub mod read;
mod record;
pub mod source;
pub mod token_text;
mod txt;
mod utf8;

pub use pack::{
    load_tokenizer, parse_part, part_owns, BosPolicy, Context, PackOptions, PackStats, Packer,
};
pub use read::{Corpus, Document, Documents, Piece, Pieces};
pub use record::{CorpusOptions, ReadStats};
pub use source::{CorpusFormat, Source};
pub use token_text::TokenText;

/// Everything that can go wrong while reading, tokenizing or packing a corpus. Each message
/// names the file (or flag) at fault and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The corpus path does not exist.
    #[error("corpus `{0}` does not exist (pass a folder or glob of .txt files, .jsonl files, or .parquet files)")]
    NotFound(PathBuf),
    /// The corpus spec names no usable files, mixes formats, or has an unknown extension.
    #[error("corpus `{spec}`: {reason}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An `hf://datasets/...` spec that is malformed, or whose files cannot be had.
    #[error("corpus `{spec}`: {source}")]
    Hub {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        source: crate::hub::dataset::HubDatasetError,
    },
    /// A file could not be read.
    #[error("{file}: cannot read ({source}); check that the file exists and is readable")]
    Io {
        /// The file being read.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A text is not valid UTF-8 (and `lossy` is off).
    #[error("{}: invalid UTF-8 at byte {offset}{}; convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or pass --lossy to replace bad bytes with U+FFFD",
        file.display(), place(*line, *row))]
    InvalidUtf8 {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// The 1-based line, for JSON lines files.
        line: Option<u64>,
        /// The 0-based row, for parquet files.
        row: Option<u64>,
        /// Byte offset of the first bad byte: from the start of the file for .txt and .jsonl,
        /// from the start of the text cell for parquet.
        offset: u64,
    },
    /// A JSON lines record is not a JSON object, lacks the text field, or has a bad value.
    #[error("{}: line {line}: {reason}", file.display())]
    BadJsonl {
        /// The .jsonl file.
        file: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A parquet file cannot be read, or lacks a column the options name.
    #[error("{}: {reason}", file.display())]
    Parquet {
        /// The .parquet file.
        file: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The tokenizer cannot be loaded or fails on a text.
    #[error("tokenizer {}: {reason}", file.display())]
    Tokenizer {
        /// The tokenizer.json file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer lacks a special token the BOS policy places.
    #[error("tokenizer {} has no `{token}` token, which --bos {policy} places; pick the BOS policy that matches the model (GPT-2: endoftext or none, BERT/DistilBERT: cls-sep)", file.display())]
    MissingSpecialToken {
        /// The tokenizer.json file.
        file: PathBuf,
        /// The missing token string, e.g. `[CLS]`.
        token: String,
        /// The BOS policy's name.
        policy: &'static str,
    },
    /// A packing option is out of range.
    #[error("{flag}: {reason}")]
    BadOption {
        /// The flag at fault, e.g. `--ctx`.
        flag: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The whole corpus tokenized to nothing.
    #[error("corpus `{spec}` has no tokens ({documents} documents read, {empty} empty ones skipped); check --text-field and that the files hold text")]
    NoTokens {
        /// The corpus spec.
        spec: String,
        /// Documents read.
        documents: u64,
        /// Empty documents skipped.
        empty: u64,
    },
    /// The corpus has tokens but fewer than one full context.
    #[error("corpus `{spec}` has {tokens} tokens, not enough for one context of {ctx} tokens; lower --ctx or add text")]
    TooShort {
        /// The corpus spec.
        spec: String,
        /// Document tokens in the corpus.
        tokens: u64,
        /// The context length asked for.
        ctx: usize,
    },
}

/// Result alias of this stage.
pub type Result<T, E = CorpusError> = std::result::Result<T, E>;

/// ` (line N)` / ` of row N` for an invalid UTF-8 message.
fn place(line: Option<u64>, row: Option<u64>) -> String {
    match (line, row) {
        (Some(line), _) => format!(" (line {line})"),
        (None, Some(row)) => format!(" of the text in row {row}"),
        (None, None) => String::new(),
    }
}

impl CorpusError {
    pub(crate) fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CorpusError::Io {
            file: file.into(),
            source,
        }
    }
}
