//! Text → token ids exactly as the Hugging Face tokenizer does by default
//! (`tokenizer.json` read by the `tokenizers` crate; special tokens added by its post-processor:
//! nothing for GPT-2, `[CLS] … [SEP]` for DistilBERT).

use std::path::{Path, PathBuf};

use super::load::LoadError;

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` with padding and truncation switched off, as Hugging Face's
    /// tokenizer call does by default (some files, e.g. all-MiniLM-L6-v2's, have fixed padding
    /// to 128 and truncation built in).
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let bad = |e: String| LoadError::BadConfig {
            file: path.into(),
            reason: e,
        };
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| bad(format!("not a valid tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| bad(format!("cannot switch truncation off: {e}")))?;
        Ok(TextTokenizer {
            inner,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token ids with the tokenizer's default special tokens (`add_special_tokens=True`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LoadError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| LoadError::BadConfig {
                file: self.path.clone(),
                reason: format!("cannot tokenize text: {e}"),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a token string such as `<|endoftext|>`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token's text as the tokenizer spells it (e.g. `Ġthe`), for display.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
