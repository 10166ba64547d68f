//! Tokenize documents and pack the token stream into fixed-length contexts, deterministically.
//!
//! Documents are tokenized without the tokenizer's own special tokens (`add_special_tokens =
//! false`, padding and truncation switched off), a piece at a time (see [`super::read::Pieces`]:
//! pieces of at most 16 KiB, cut where the tokens are those of the whole document), in chunks of
//! up to [`CHUNK_PIECES`] pieces or [`CHUNK_BYTES`] bytes, in parallel (`encode_batch_fast`,
//! rayon; order kept). A chunk is tokenized only when the stream runs short of a context, so
//! memory is bounded by the chunk size whatever the documents' lengths, and reading stops at
//! `max_tokens`. Their tokens are joined into one stream with a separator token between
//! consecutive documents; the packer cuts the stream into slices and places the special tokens
//! of the [`BosPolicy`]:
//!
//! | policy | stream separator | context (`ctx` tokens) |
//! |---|---|---|
//! | `EndOfText` (GPT-2 default) | `<\|endoftext\|>` | `<\|endoftext\|>` + ctx−1 stream tokens |
//! | `None` (GPT-2 `--no-bos`) | `<\|endoftext\|>` | ctx stream tokens |
//! | `ClsSep` (BERT / DistilBERT) | `[SEP]` | `[CLS]` + ctx−2 stream tokens + `[SEP]` |
//!
//! Rules, so that every context is well formed and the packing is the same on every run:
//! - The stream starts with the first document (no leading separator) and has exactly one
//!   separator between two documents.
//! - With `EndOfText` and `ClsSep`, a separator that would be the first stream token of a
//!   context is dropped: the BOS / `[CLS]` just placed already marks the document start, so a
//!   context never begins `<|endoftext|> <|endoftext|>` or `[CLS] [SEP]`. A separator in the
//!   last stream slot is kept (`… [SEP] [SEP]` can end a BERT context). With `None` the stream is
//!   cut as it is.
//! - Documents that tokenize to nothing add no separator.
//! - The final slice shorter than a context is dropped; its document tokens are counted in
//!   [`PackStats::dropped_tail_tokens`].
//! - Only tokens the packer places are flagged `special` (their `doc` is `None`); a literal
//!   `<|endoftext|>` inside a text is tokenized as the tokenizer does by default (to the
//!   special id) and stays a document token.
//!
//! Context ids count from 0 over the whole corpus. Scale-out: every part runs the same packer
//! over the same corpus and keeps the contexts [`part_owns`] gives it, so ids agree across parts.
//! Resume: [`PackOptions::start_context_id`] skips the contexts before it — they are still
//! tokenized (the stream must be rebuilt to know where a context starts) but not assembled.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokenizers::Tokenizer;

pub use super::pack_options::{parse_part, part_owns, BosPolicy, PackOptions};
use super::read::{Documents, Piece, Pieces};
use super::{CorpusError, Result};

/// Pieces (documents, or parts of long ones) tokenized per `encode_batch` call.
pub const CHUNK_PIECES: usize = 256;
/// A chunk also closes once its texts reach this many bytes: the tokenizer holds about 20 bytes
/// per text byte while it works, so this bounds its memory (a few MB) whatever the documents.
pub const CHUNK_BYTES: usize = 256 << 10;

/// One packed context: `ctx` tokens with, per token, whether the packer placed it, the document
/// it came from, and that document's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// 0, 1, 2, … in corpus order.
    pub id: u64,
    /// Exactly `ctx` token ids.
    pub tokens: Vec<u32>,
    /// True for the tokens the packer placed (BOS, `[CLS]`, `[SEP]`, separators).
    pub special: Vec<bool>,
    /// `Document::index` of each token's document; `None` on specials.
    pub doc: Vec<Option<u64>>,
    /// Per token, one value per label field (the document's labels); all `None` on specials.
    pub labels: Vec<Vec<Option<String>>>,
}

impl Context {
    /// The values of label field `field` along the context (a shard column).
    pub fn label_column(&self, field: usize) -> impl Iterator<Item = Option<&str>> + '_ {
        self.labels
            .iter()
            .map(move |row| row.get(field).and_then(|v| v.as_deref()))
    }
}

/// Counts kept while packing (the manifest's totals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PackStats {
    /// Non-empty documents read, whole or in part (with `max_tokens`, up to one chunk beyond the
    /// last context).
    pub documents: u64,
    /// Empty or whitespace-only documents skipped by the reader.
    pub empty_skipped: u64,
    /// Invalid UTF-8 sequences replaced (with `lossy`).
    pub lossy_replacements: u64,
    /// Non-empty documents whose text tokenized to no token (skipped, no separator).
    pub documents_without_tokens: u64,
    /// Document tokens produced by the tokenizer (specials not counted).
    pub tokens: u64,
    /// Contexts packed, those skipped before `start_context_id` included.
    pub contexts: u64,
    /// Contexts returned by the iterator.
    pub contexts_emitted: u64,
    /// Document tokens in the final partial context, dropped at the end of the corpus.
    pub dropped_tail_tokens: u64,
    /// True when packing stopped at `max_tokens` rather than at the end of the corpus.
    pub stopped_at_max_tokens: bool,
}

/// Loads a `tokenizer.json` for packing: padding and truncation switched off, so that
/// `encode_batch` returns each document's tokens exactly.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| CorpusError::Tokenizer {
        file: path.into(),
        reason: format!("not a valid tokenizer.json ({e})"),
    })?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| CorpusError::Tokenizer {
            file: path.into(),
            reason: format!("cannot switch truncation off ({e})"),
        })?;
    Ok(tokenizer)
}

/// A document's index and labels, shared by all its tokens in the stream.
struct DocTag {
    index: u64,
    labels: Vec<Option<String>>,
}

/// A token of the stream; `doc` is `None` for a separator.
struct StreamToken {
    id: u32,
    doc: Option<Arc<DocTag>>,
}

/// Iterator of [`Context`]s over a document stream. After an error it yields nothing more.
pub struct Packer {
    pieces: Pieces,
    tokenizer: Arc<Tokenizer>,
    tokenizer_path: PathBuf,
    options: PackOptions,
    max_contexts: Option<u64>,
    label_count: usize,
    first: Option<u32>,
    separator: u32,
    last: Option<u32>,
    /// Stream tokens not yet packed.
    stream: VecDeque<StreamToken>,
    /// A document has entered the stream (so the next one is preceded by a separator).
    any_document: bool,
    /// The document being tokenized (its pieces share it) and its tokens so far.
    current: Option<(Arc<DocTag>, u64)>,
    documents_done: bool,
    next_id: u64,
    stats: PackStats,
    finished: bool,
}

impl Packer {
    /// A packer over `documents` with the tokenizer at `tokenizer_json`.
    pub fn new(documents: Documents, tokenizer_json: &Path, options: PackOptions) -> Result<Self> {
        let tokenizer = Arc::new(load_tokenizer(tokenizer_json)?);
        Self::with_tokenizer(documents, tokenizer, tokenizer_json, options)
    }

    /// A packer sharing an already loaded tokenizer (see [`load_tokenizer`]); `tokenizer_json`
    /// is its file, for error messages.
    pub fn with_tokenizer(
        documents: Documents,
        tokenizer: Arc<Tokenizer>,
        tokenizer_json: &Path,
        options: PackOptions,
    ) -> Result<Self> {
        options.validate()?;
        let lookup = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| CorpusError::MissingSpecialToken {
                    file: tokenizer_json.into(),
                    token: token.into(),
                    policy: options.bos.name(),
                })
        };
        let (first, separator, last) = options.bos.token_strings();
        let first = first.map(lookup).transpose()?;
        let separator = lookup(separator)?;
        let last = last.map(lookup).transpose()?;
        Ok(Packer {
            label_count: documents.label_fields().len(),
            pieces: documents.into_pieces(),
            tokenizer,
            tokenizer_path: tokenizer_json.into(),
            max_contexts: options.max_contexts(),
            options,
            first,
            separator,
            last,
            stream: VecDeque::new(),
            any_document: false,
            current: None,
            documents_done: false,
            next_id: 0,
            stats: PackStats::default(),
            finished: false,
        })
    }

    /// The tokenizer, to share with [`super::TokenText`].
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The options in use.
    pub fn options(&self) -> &PackOptions {
        &self.options
    }

    /// Counts so far (final once the iterator has returned `None`).
    pub fn stats(&self) -> PackStats {
        let read = self.pieces.stats();
        PackStats {
            documents: read.documents,
            empty_skipped: read.empty_skipped,
            lossy_replacements: read.lossy_replacements,
            ..self.stats
        }
    }

    /// The next context, `None` at the end (or at `max_tokens`).
    fn next_context(&mut self) -> Result<Option<Context>> {
        let need = self.options.bos.stream_len(self.options.ctx);
        // Only policies that place a first token drop a separator at the slice start.
        let drop_leading_separator = self.first.is_some();
        loop {
            if self.max_contexts.is_some_and(|max| self.next_id >= max) {
                self.stats.stopped_at_max_tokens = true;
                return Ok(None);
            }
            loop {
                if drop_leading_separator {
                    while self.stream.front().is_some_and(|t| t.doc.is_none()) {
                        self.stream.pop_front();
                    }
                }
                if self.stream.len() >= need || self.documents_done {
                    break;
                }
                self.refill()?;
            }
            if self.stream.len() < need {
                return self.end_of_corpus();
            }
            let id = self.next_id;
            self.next_id += 1;
            self.stats.contexts += 1;
            if id < self.options.start_context_id {
                self.stream.drain(..need);
                continue;
            }
            self.stats.contexts_emitted += 1;
            return Ok(Some(self.assemble(id, need)));
        }
    }

    /// Builds context `id` from the first `need` stream tokens.
    fn assemble(&mut self, id: u64, need: usize) -> Context {
        let ctx = self.options.ctx;
        let mut context = Context {
            id,
            tokens: Vec::with_capacity(ctx),
            special: Vec::with_capacity(ctx),
            doc: Vec::with_capacity(ctx),
            labels: Vec::with_capacity(ctx),
        };
        let no_labels = vec![None; self.label_count];
        let mut push = |id: u32, doc: Option<&DocTag>| {
            context.tokens.push(id);
            context.special.push(doc.is_none());
            context.doc.push(doc.map(|d| d.index));
            context
                .labels
                .push(doc.map_or_else(|| no_labels.clone(), |d| d.labels.clone()));
        };
        if let Some(first) = self.first {
            push(first, None);
        }
        for token in self.stream.drain(..need) {
            push(token.id, token.doc.as_deref());
        }
        if let Some(last) = self.last {
            push(last, None);
        }
        context
    }

    /// Tokenizes the next chunk of pieces into the stream.
    fn refill(&mut self) -> Result<()> {
        let mut chunk: Vec<Piece> = Vec::with_capacity(CHUNK_PIECES);
        let mut bytes = 0;
        while chunk.len() < CHUNK_PIECES && bytes < CHUNK_BYTES {
            match self.pieces.next() {
                Some(piece) => {
                    let piece = piece?;
                    bytes += piece.text.len();
                    chunk.push(piece);
                }
                None => {
                    self.documents_done = true;
                    break;
                }
            }
        }
        let texts: Vec<&str> = chunk.iter().map(|p| p.text.as_str()).collect();
        let encodings = if texts.is_empty() {
            Vec::new()
        } else {
            self.tokenizer
                .encode_batch_fast(texts, false)
                .map_err(|e| CorpusError::Tokenizer {
                    file: self.tokenizer_path.clone(),
                    reason: format!(
                        "cannot tokenize documents {}..={} ({e})",
                        chunk[0].index,
                        chunk[chunk.len() - 1].index
                    ),
                })?
        };
        for (piece, encoding) in chunk.into_iter().zip(encodings) {
            if let Some(labels) = piece.labels {
                self.end_document();
                let tag = Arc::new(DocTag {
                    index: piece.index,
                    labels,
                });
                self.current = Some((tag, 0));
            }
            let ids = encoding.get_ids();
            let Some((tag, tokens)) = &mut self.current else {
                continue; // unreachable: a document's first piece carries its labels
            };
            if ids.is_empty() {
                continue;
            }
            // The separator goes before a document's first token, so a document without
            // tokens adds none.
            if *tokens == 0 && self.any_document {
                self.stream.push_back(StreamToken {
                    id: self.separator,
                    doc: None,
                });
            }
            self.any_document = true;
            *tokens += ids.len() as u64;
            self.stats.tokens += ids.len() as u64;
            self.stream.extend(ids.iter().map(|&id| StreamToken {
                id,
                doc: Some(tag.clone()),
            }));
        }
        if self.documents_done {
            self.end_document();
        }
        Ok(())
    }

    /// Counts the document just tokenized if it gave no token.
    fn end_document(&mut self) {
        if let Some((_, 0)) = self.current.take() {
            self.stats.documents_without_tokens += 1;
        }
    }

    /// Drops the partial tail; an error if the corpus gave no context at all.
    fn end_of_corpus(&mut self) -> Result<Option<Context>> {
        self.stats.dropped_tail_tokens =
            self.stream.iter().filter(|t| t.doc.is_some()).count() as u64;
        self.stream.clear();
        if self.next_id > 0 {
            return Ok(None);
        }
        let spec = self.pieces.spec().to_string();
        let read = self.pieces.stats();
        Err(if self.stats.tokens == 0 {
            CorpusError::NoTokens {
                spec,
                documents: read.documents,
                empty: read.empty_skipped,
            }
        } else {
            CorpusError::TooShort {
                spec,
                tokens: self.stats.tokens,
                ctx: self.options.ctx,
            }
        })
    }
}

impl Iterator for Packer {
    type Item = Result<Context>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = self.next_context().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.finished = true;
        }
        next
    }
}
