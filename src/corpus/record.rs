//! What the corpus readers (txt, jsonl, long jsonl lines, parquet) share: the reading options,
//! the counters, and the shape of a record as a reader hands it back. Its own file so that each
//! reader and [`super::read`], which drives them, import it without importing each other.

use serde::Serialize;

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

/// The start of one record as a reader found it, before the empty check.
pub(super) struct Head {
    pub labels: Vec<Option<String>>,
    /// False for a null text.
    pub has_text: bool,
}

/// One record read whole (parquet), before the empty check.
pub(super) struct Record {
    /// `None` for a null text.
    pub text: Option<String>,
    pub labels: Vec<Option<String>>,
    /// Invalid UTF-8 sequences replaced in this record.
    pub replacements: u64,
}
