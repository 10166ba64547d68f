//! Escaping text for HTML and SVG.

/// Escapes text for HTML content, attribute values and XML alike. Also escapes `/` (so no URL,
/// comment or closing tag can come out of report text) and turns control characters other than
/// tab/newline into their visible Unicode pictures (they are invalid in XML).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '/' => o.push_str("&#47;"),
            '\t' | '\n' => o.push(c),
            c if (c as u32) < 0x20 => o.push(char::from_u32(0x2400 + c as u32).unwrap_or('�')),
            '\u{7f}' => o.push('\u{2421}'),
            c => o.push(c),
        }
    }
    o
}

/// Escapes the markup characters `&`, `<`, `>` only: enough for text content written by the
/// program itself (the toy figures' titles and labels, whose files must stay byte for byte as
/// they are). Text that comes from data goes through [`esc`].
pub fn esc_text(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_escapes_neutralise_markup() {
        assert_eq!(esc("a<b>&\"/'"), "a&lt;b&gt;&amp;&quot;&#47;&#39;");
        assert_eq!(esc("\u{1}\t"), "\u{2401}\t");
        assert_eq!(esc_text("1/2 <b> & \"q\""), "1/2 &lt;b&gt; &amp; \"q\"");
    }
}
