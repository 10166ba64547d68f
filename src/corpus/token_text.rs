//! [`TokenText`]: the readable text of each token id, for the shards' `token` column.
//!
//! A token's text is the tokenizer's decode of that single id, special tokens kept:
//! - GPT-2 byte-level BPE: `Ġthe` → ` the`, `<|endoftext|>` → `<|endoftext|>`. A token that
//!   is only part of a UTF-8 character (e.g. the first byte of an emoji) decodes to U+FFFD in
//!   Hugging Face; here its bytes that are not whole characters are written `<0xE2>`, so that
//!   distinct byte tokens stay distinct.
//! - WordPiece: the decoder leaves a lone token as it is: `##ing` → `##ing` (the `##` says the
//!   token continues a word), `[CLS]` → `[CLS]`.
//!
//! The whole vocabulary is decoded once, on first use, into a table (a few MB for GPT-2).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use tokenizers::Tokenizer;

use super::pack::load_tokenizer;
use super::Result;

/// Token id → readable text, cached for the whole vocabulary.
pub struct TokenText {
    tokenizer: Arc<Tokenizer>,
    table: OnceLock<Vec<String>>,
}

impl TokenText {
    /// Shares a loaded tokenizer (e.g. `Packer::tokenizer()`).
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        TokenText {
            tokenizer,
            table: OnceLock::new(),
        }
    }

    /// Loads the tokenizer at `tokenizer_json`.
    pub fn from_file(tokenizer_json: &Path) -> Result<Self> {
        Ok(Self::new(Arc::new(load_tokenizer(tokenizer_json)?)))
    }

    /// The text of token `id`; empty for an id outside the vocabulary.
    pub fn get(&self, id: u32) -> &str {
        self.table()
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Size of the table: the largest token id + 1.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// True when the tokenizer has no tokens.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    fn table(&self) -> &Vec<String> {
        self.table.get_or_init(|| {
            let vocab = self.tokenizer.get_vocab(true);
            let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
            (0..size as u32)
                .into_par_iter()
                .map(|id| self.decode_one(id))
                .collect()
        })
    }

    fn decode_one(&self, id: u32) -> String {
        let Some(token) = self.tokenizer.id_to_token(id) else {
            return String::new();
        };
        match self.tokenizer.decode(&[id], false) {
            Ok(text) if text.contains('\u{FFFD}') && !token.contains('\u{FFFD}') => {
                byte_level_bytes(&token).map_or(text, |bytes| escape_partial_utf8(&bytes))
            }
            Ok(text) => text,
            // A decoder that fails on a lone token: show the token as the vocabulary spells it.
            Err(_) => token,
        }
    }
}

/// The bytes of a byte-level BPE token (GPT-2's byte ↔ printable-character table), or `None`
/// when a character is outside that table (not a byte-level token).
fn byte_level_bytes(token: &str) -> Option<Vec<u8>> {
    token.chars().map(byte_of_char).collect()
}

/// Inverse of GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in byte order.
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let code = c as u32;
    if code < 0x100 {
        return printable(code).then_some(code as u8);
    }
    let offset = code.checked_sub(0x100)?;
    (0u32..=0xFF)
        .filter(|&b| !printable(b))
        .nth(offset as usize)
        .map(|b| b as u8)
}

/// Bytes as text, with each byte that is not part of a whole UTF-8 character written `<0xNN>`.
fn escape_partial_utf8(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("<0x{b:02X}>"));
        }
    }
    out
}
