//! UTF-8 decoding of corpus bytes, shared by the readers: whole texts and streamed parts, with
//! `--lossy` replacement (counted) or the offset of the first bad byte.

use super::{CorpusError, Result};

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

/// Decodes the front of a stream of UTF-8 bytes onto `out` and removes it from `raw`, keeping
/// a character cut off at the end (unless `at_end`) for the next call. Returns the invalid
/// sequences replaced (with `lossy`); without, the offset in `raw` of the first bad byte goes
/// to `error`.
pub(super) fn decode_part(
    raw: &mut Vec<u8>,
    at_end: bool,
    lossy: bool,
    out: &mut String,
    error: impl FnOnce(usize) -> CorpusError,
) -> Result<u64> {
    let keep = if at_end { 0 } else { incomplete_tail(raw) };
    let body = raw.len() - keep;
    let replacements = match std::str::from_utf8(&raw[..body]) {
        Ok(text) => {
            out.push_str(text);
            0
        }
        Err(e) if !lossy => return Err(error(e.valid_up_to())),
        Err(_) => {
            let mut n = 0;
            for chunk in raw[..body].utf8_chunks() {
                out.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    out.push('\u{FFFD}');
                    n += 1;
                }
            }
            n
        }
    };
    raw.drain(..body);
    Ok(replacements)
}

/// Bytes at the end of `bytes` that start a UTF-8 character the following bytes may complete.
fn incomplete_tail(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(3) {
        let b = bytes[n - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let need = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}
