//! `unravel trace`: run a model on a few texts and write every requested hook to one safetensors
//! file. Texts are concatenated with no padding: `tokens` i64 [N], `doc` i64 [N], one f32 [N, d]
//! tensor per hook, and optionally `logits` f32 [N, vocab] and `token_ce` f32 [N] (next-token
//! cross-entropy in nats, 0 on each text's last token).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor, D};

use crate::models::hooks::HookSet;
use crate::models::load::LoadError;
use crate::models::tokenizer::TextTokenizer;
use crate::models::Model;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{origin} is empty; give at least one character of text")]
    EmptyText { origin: String },
    #[error("{origin} has {tokens} tokens, more than the model's {max} positions; shorten it or pass --truncate")]
    TooLong {
        origin: String,
        tokens: usize,
        max: usize,
    },
    #[error("no texts: pass --text \"...\" or --file texts.txt")]
    NoTexts,
    #[error("--logits: {0} has no language-model head; drop --logits")]
    NoLogits(&'static str),
    #[error(
        "--prepend-bos: {0} is an encoder whose texts already start with [CLS]; drop --prepend-bos"
    )]
    NoBos(&'static str),
    #[error("--prepend-bos: the tokenizer has no `<|endoftext|>` token")]
    NoBosToken,
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("model forward failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// One input text and where it came from (for error messages).
#[derive(Clone, Debug)]
pub struct TextInput {
    pub text: String,
    pub origin: String,
}

/// Reads a texts file: one text per line, blank lines skipped.
pub fn read_text_file(path: &Path) -> Result<Vec<TextInput>, TraceError> {
    let content = std::fs::read(path).map_err(|e| TraceError::Write {
        path: path.into(),
        reason: format!("cannot read: {e}"),
    })?;
    let content = String::from_utf8(content).map_err(|e| TraceError::Write {
        path: path.into(),
        reason: format!(
            "invalid UTF-8 at byte {}; save the file as UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })?;
    Ok(content
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| TextInput {
            text: l.to_string(),
            origin: format!("{} line {}", path.display(), i + 1),
        })
        .collect())
}

/// Tokenizes each text as Hugging Face does by default (optionally with a BOS first), checking
/// length against the model's positions.
pub fn tokenize(
    tok: &TextTokenizer,
    model: &Model,
    texts: &[TextInput],
    prepend_bos: bool,
    truncate: bool,
) -> Result<Vec<Vec<u32>>, TraceError> {
    if texts.is_empty() {
        return Err(TraceError::NoTexts);
    }
    let bos = if prepend_bos {
        if !model.arch().is_causal() {
            return Err(TraceError::NoBos(model.arch().name()));
        }
        Some(
            tok.token_to_id("<|endoftext|>")
                .ok_or(TraceError::NoBosToken)?,
        )
    } else {
        None
    };
    let max = model.max_positions();
    let mut out = Vec::with_capacity(texts.len());
    for t in texts {
        if t.text.is_empty() {
            return Err(TraceError::EmptyText {
                origin: t.origin.clone(),
            });
        }
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(tok.encode(&t.text)?);
        if ids.is_empty() {
            return Err(TraceError::EmptyText {
                origin: t.origin.clone(),
            });
        }
        if ids.len() > max {
            if !truncate {
                return Err(TraceError::TooLong {
                    origin: t.origin.clone(),
                    tokens: ids.len(),
                    max,
                });
            }
            // Encoders keep their closing [SEP]; decoders keep the first `max` tokens.
            let last = ids[ids.len() - 1];
            ids.truncate(max);
            if !model.arch().is_causal() {
                ids[max - 1] = last;
            }
        }
        out.push(ids);
    }
    Ok(out)
}

/// Every recorded value, over all texts concatenated (no padding).
pub struct Trace {
    pub tokens: Vec<u32>,
    pub doc: Vec<usize>,
    /// `(hook name, d, rows × d values)` in forward order.
    pub hooks: Vec<(String, usize, Vec<f32>)>,
    pub logits: Option<Vec<f32>>,
    pub token_ce: Option<Vec<f32>>,
    pub vocab: usize,
}

/// Runs the model over `texts` in right-padded batches and gathers the real tokens' values.
pub fn run(
    model: &Model,
    texts: &[Vec<u32>],
    hooks: &HookSet,
    logits: bool,
    batch_size: usize,
) -> Result<Trace, TraceError> {
    if logits && !model.has_logits() {
        return Err(TraceError::NoLogits(model.arch().name()));
    }
    let device = model.device();
    let mut trace = Trace {
        tokens: vec![],
        doc: vec![],
        hooks: hooks
            .iter()
            .map(|p| (p.name(), model.hook_dim(p), vec![]))
            .collect(),
        logits: logits.then(Vec::new),
        token_ce: logits.then(Vec::new),
        vocab: model.vocab_size(),
    };
    for (chunk_i, chunk) in texts.chunks(batch_size.max(1)).enumerate() {
        let t = chunk.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(chunk.len() * t);
        let mut mask = Vec::with_capacity(chunk.len());
        for seq in chunk {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(model.pad_token_id(), t - seq.len()));
            let mut m = vec![1u8; seq.len()];
            m.resize(t, 0);
            mask.push(m);
        }
        let ids_t = Tensor::from_vec(ids, (chunk.len(), t), &device)?;
        let out = model.forward(&ids_t, &mask, hooks, logits)?;
        for (i, seq) in chunk.iter().enumerate() {
            trace.tokens.extend_from_slice(seq);
            trace
                .doc
                .extend(std::iter::repeat_n(chunk_i * batch_size + i, seq.len()));
        }
        for ((_, _, values), (_, tensor)) in trace.hooks.iter_mut().zip(out.hooks.iter()) {
            append_real_rows(values, tensor, chunk)?;
        }
        if let (Some(l), Some(all_logits), Some(ce)) =
            (&out.logits, trace.logits.as_mut(), trace.token_ce.as_mut())
        {
            append_real_rows(all_logits, l, chunk)?;
            ce.extend(next_token_ce(l, chunk)?);
        }
    }
    Ok(trace)
}

/// Appends rows `[i, ..len_i, :]` of a `[b, t, d]` tensor, as f32, to `dst`.
fn append_real_rows(dst: &mut Vec<f32>, x: &Tensor, chunk: &[Vec<u32>]) -> candle_core::Result<()> {
    let rows = x
        .to_dtype(DType::F32)?
        .to_device(&candle_core::Device::Cpu)?;
    let rows = rows.to_vec3::<f32>()?;
    for (r, seq) in rows.iter().zip(chunk) {
        for v in r.iter().take(seq.len()) {
            dst.extend_from_slice(v);
        }
    }
    Ok(())
}

/// Cross-entropy (nats) of predicting token `t+1` from position `t`; 0 on each text's last token.
fn next_token_ce(logits: &Tensor, chunk: &[Vec<u32>]) -> candle_core::Result<Vec<f32>> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?
        .to_device(&candle_core::Device::Cpu)?;
    let (b, t, _) = logp.dims3()?;
    let mut next = vec![0u32; b * t];
    for (i, seq) in chunk.iter().enumerate() {
        for j in 0..seq.len().saturating_sub(1) {
            next[i * t + j] = seq[j + 1];
        }
    }
    let next = Tensor::from_vec(next, (b, t, 1), &candle_core::Device::Cpu)?;
    let picked = logp.gather(&next, 2)?.squeeze(2)?.to_vec2::<f32>()?; // [b, t]
    let mut ce = vec![];
    for (row, seq) in picked.iter().zip(chunk) {
        for (j, &lp) in row.iter().enumerate().take(seq.len()) {
            ce.push(if j + 1 < seq.len() { -lp } else { 0.0 });
        }
    }
    Ok(ce)
}

/// Writes a trace to a safetensors file atomically (temp file, fsync, rename).
pub fn write(
    trace: &Trace,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<(), TraceError> {
    let n = trace.tokens.len();
    let cpu = candle_core::Device::Cpu;
    let mut tensors: Vec<(String, Tensor)> = vec![
        (
            "tokens".into(),
            Tensor::from_vec(
                trace.tokens.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                n,
                &cpu,
            )?,
        ),
        (
            "doc".into(),
            Tensor::from_vec(
                trace.doc.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                n,
                &cpu,
            )?,
        ),
    ];
    for (name, d, values) in &trace.hooks {
        tensors.push((name.clone(), Tensor::from_slice(values, (n, *d), &cpu)?));
    }
    if let (Some(l), Some(ce)) = (&trace.logits, &trace.token_ce) {
        tensors.push((
            "logits".into(),
            Tensor::from_slice(l, (n, trace.vocab), &cpu)?,
        ));
        tensors.push(("token_ce".into(), Tensor::from_slice(ce, n, &cpu)?));
    }
    let bytes = safetensors::tensor::serialize(
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        Some(metadata),
    )
    .map_err(|e| TraceError::Write {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let bytes = with_sorted_header(bytes);
    crate::io::write_atomic(path, &bytes).map_err(|e| TraceError::Write {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// The same safetensors bytes with the header's JSON keys sorted. `safetensors` writes the
/// metadata from a `HashMap`, so its key order (and the file's bytes) changed from run to run;
/// sorted, the same trace is the same file. The header keeps its length (the same keys and
/// values, compact either way), so the tensor offsets stay valid; if it would not, the bytes are
/// returned as they were.
fn with_sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(|b| u64::from_le_bytes(b) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    // serde_json's map is a BTreeMap here (no `preserve_order`): keys come out sorted.
    let Ok(mut sorted) = serde_json::to_vec(&value) else {
        return bytes;
    };
    if sorted.len() > len {
        return bytes;
    }
    sorted.resize(len, b' ');
    bytes[8..8 + len].copy_from_slice(&sorted);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> Trace {
        Trace {
            tokens: vec![3, 1, 4],
            doc: vec![0, 0, 1],
            hooks: vec![("blocks.0.hook_resid_post".into(), 2, vec![0.5; 6])],
            logits: None,
            token_ce: None,
            vocab: 8,
        }
    }

    #[test]
    fn the_same_trace_is_the_same_file_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |i: usize| -> HashMap<String, String> {
            (0..12)
                .map(|k| (format!("key{k}"), format!("v{i}{k}")))
                .collect()
        };
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&trace(), &a, meta(0)).unwrap();
        write(&trace(), &b, meta(0)).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let keys: Vec<&String> = header.metadata().as_ref().unwrap().keys().collect();
        assert_eq!(keys.len(), 12);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let hook = st.tensor("blocks.0.hook_resid_post").unwrap();
        assert_eq!(hook.shape(), &[3, 2]);
        assert_eq!(&hook.data()[..4], &0.5f32.to_le_bytes());
        // Sorted as strings: "key10" before "key2".
        let k2 = bytes.windows(4).position(|w| w == b"key2");
        let k10 = bytes.windows(5).position(|w| w == b"key10");
        assert!(k10.is_some() && k10 < k2, "metadata keys sorted");
    }
}
