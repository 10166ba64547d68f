//! The escapes of a JSON string body (`\n`, `\"`, `\u00e9`, surrogate pairs), decoded for the
//! long-line reader, which reads strings in pieces and so cannot hand them to serde whole.

/// An escape that is not valid JSON. The messages are phrased to follow "not a JSON object (…"
/// in the reader's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum EscapeError {
    /// A backslash at the very end of the body.
    #[error("a cut escape")]
    Cut,
    /// `\u` not followed by 4 hex digits.
    #[error("an invalid \\u escape")]
    BadUnicode,
    /// A high surrogate `\uD800`–`\uDBFF` without a low one after it.
    #[error("a lone leading surrogate in a \\u escape")]
    LoneLeading { high: u32 },
    /// A low surrogate `\uDC00`–`\uDFFF` without a high one before it.
    #[error("a lone trailing surrogate in a \\u escape")]
    LoneTrailing { low: u32 },
    /// A backslash before a character that JSON does not escape.
    #[error("an invalid escape")]
    Unknown { escape: char },
}

/// Decodes the JSON escapes of a string body (complete escapes only, as
/// [`super::json_cursor::Cursor::string`] leaves them) onto `out`.
pub(super) fn unescape(raw: &str, out: &mut String) -> Result<(), EscapeError> {
    let bytes = raw.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[start..i]);
        let escape = *bytes.get(i + 1).ok_or(EscapeError::Cut)?;
        i += 2;
        let c = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = bytes
                    .get(i..)
                    .and_then(hex4)
                    .ok_or(EscapeError::BadUnicode)?;
                i += 4;
                let code = if is_high_surrogate(hi) {
                    let lo = bytes
                        .get(i..i + 2)
                        .filter(|b| *b == b"\\u")
                        .and_then(|_| hex4(bytes.get(i + 2..)?))
                        .filter(|lo| (0xDC00..0xE000).contains(lo))
                        .ok_or(EscapeError::LoneLeading { high: hi })?;
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or(EscapeError::LoneTrailing { low: code })?
            }
            _ => {
                // The byte after a backslash starts a character (the backslash is ASCII).
                let escape = raw[i - 1..].chars().next().unwrap_or('?');
                return Err(EscapeError::Unknown { escape });
            }
        };
        out.push(c);
        start = i;
    }
    out.push_str(&raw[start..]);
    Ok(())
}

pub(super) fn is_high_surrogate(u: u32) -> bool {
    (0xD800..0xDC00).contains(&u)
}

/// The value of 4 hex digits.
pub(super) fn hex4(digits: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(digits.get(..4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_every_escape() {
        let mut out = String::new();
        unescape(r#"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00z"#, &mut out).unwrap();
        assert_eq!(out, "a\"b\\c/d\u{8}\u{c}\n\r\té😀z");
        let err = |raw: &str| unescape(raw, &mut String::new()).unwrap_err();
        assert_eq!(err(r"\ud83d"), EscapeError::LoneLeading { high: 0xd83d });
        assert_eq!(err(r"\ude00"), EscapeError::LoneTrailing { low: 0xde00 });
        assert_eq!(err(r"\x"), EscapeError::Unknown { escape: 'x' });
        assert_eq!(err(r"\u12"), EscapeError::BadUnicode);
        assert_eq!(err("a\\"), EscapeError::Cut);
        assert_eq!(
            err(r"\ud83d").to_string(),
            "a lone leading surrogate in a \\u escape"
        );
    }
}
