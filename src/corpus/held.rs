//! [`Held`]: a record's text already in memory, handed out a part at a time like a file's.

/// A text already in memory (a parquet cell, a short .jsonl line), handed out in parts.
pub(super) struct Held {
    text: String,
    at: usize,
}

impl Held {
    pub(super) fn new(text: String) -> Self {
        Held { text, at: 0 }
    }

    /// Appends about `max` more bytes to `out`; false when nothing was left.
    pub(super) fn more(&mut self, out: &mut String, max: usize) -> bool {
        if self.at >= self.text.len() {
            return false;
        }
        let mut end = (self.at + max).min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&self.text[self.at..end]);
        self.at = end;
        true
    }
}
