//! Concept labels per token, from four sources (any mix):
//! - built-in taggers on the token and its word in context ([`TAGGERS`], documented there);
//! - lexicon files (TOML: `concept = ["word", …]`), matched on the whole word the token belongs
//!   to, case-insensitively (entries with spaces match as phrases);
//! - regular expressions (`name = 'pattern'`), matched on the context's text: every token that
//!   overlaps a match carries the concept;
//! - label columns carried from the corpus: value `v` of column `label.x` is concept `x=v`
//!   (`1`/`true`/`yes` make concept `x`; `0`/`false`/`no`/null make none).
//!
//! Labels are computed from the stored tokens, one whole context at a time: a context's text is
//! its tokens joined (WordPiece `##` pieces glued to the previous token, other WordPiece tokens
//! separated by a space; byte-level BPE tokens carry their own spaces). A token's concepts are a
//! bit set (`u128`), so at most [`MAX_CONCEPTS`] concepts per audit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

pub use super::concept_error::ConceptError;

/// The bit-set width.
pub const MAX_CONCEPTS: usize = 128;

/// Built-in taggers: name and what it marks.
pub const TAGGERS: [(&str, &str); 11] = [
    (
        "digit",
        "the token is only ASCII digits (after its leading space)",
    ),
    (
        "number",
        "the token is part of a number in context: 12, 3.14, 1,000",
    ),
    ("punctuation", "the token is only punctuation or symbols"),
    ("sentence_end", "the token is . ! or ?"),
    ("capitalized", "the token starts with an uppercase letter"),
    ("all_caps", "the token's word has 2+ letters, all uppercase"),
    (
        "word_start",
        "the token begins a word (a letter or digit after a non-word character)",
    ),
    (
        "whitespace",
        "the token is only whitespace (spaces, tabs, newlines)",
    ),
    ("newline", "the token contains a newline"),
    (
        "code",
        "the token contains a code-like symbol: { } [ ] ( ) ; = < > \\ | & * # $ @ ^ ~ ` _",
    ),
    (
        "url",
        "the token is part of a URL (http://, https://, www.)",
    ),
];

/// What to label, as written in a concepts TOML file (see `configs/concepts.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptConfig {
    /// Tagger names, or `["all"]`.
    #[serde(default)]
    pub taggers: Vec<String>,
    /// Lexicon files.
    #[serde(default)]
    pub lexicons: Vec<PathBuf>,
    /// Concept name → regular expression.
    #[serde(default)]
    pub regex: BTreeMap<String, String>,
    /// Label columns to use (all the dataset's when absent; `[]` for none).
    pub label_columns: Option<Vec<String>>,
}

impl ConceptConfig {
    /// Reads a concepts TOML file. Relative lexicon paths are taken from the working folder
    /// when they exist there, else from the file's folder.
    pub fn load(path: &Path) -> Result<ConceptConfig, ConceptError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConceptError::Read {
            path: path.into(),
            error,
        })?;
        let mut cfg: ConceptConfig = toml::from_str(&text).map_err(|error| ConceptError::Toml {
            path: path.into(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for lex in &mut cfg.lexicons {
            if lex.is_relative() && !lex.exists() && base.join(&*lex).exists() {
                *lex = base.join(&*lex);
            }
        }
        Ok(cfg)
    }

    /// All built-in taggers and every label column: the default when nothing is asked.
    pub fn default_all() -> ConceptConfig {
        ConceptConfig {
            taggers: vec!["all".into()],
            ..ConceptConfig::default()
        }
    }
}

/// How a token matches: by its own text, its word, or its span in the context text.
enum Rule {
    Tagger(usize),
    /// Phrase or regex over the context text.
    Pattern(Regex),
}

/// Where a label-column concept comes from.
struct LabelRule {
    /// Index into the label columns read.
    column: usize,
    /// Value → concept index.
    values: HashMap<String, usize>,
}

/// Turns tokens (and label columns) into concept bit sets.
pub struct Labeler {
    names: Vec<String>,
    sources: Vec<&'static str>,
    rules: Vec<(usize, Rule)>,
    /// Lower-cased word → concepts.
    words: HashMap<String, Vec<usize>>,
    labels: Vec<LabelRule>,
    label_columns: Vec<String>,
    wordpiece: bool,
    number: Regex,
    url: Regex,
}

/// A label column's value as a concept name (None: no concept).
fn label_concept(column: &str, value: &str) -> Option<String> {
    let short = column.strip_prefix("label.").unwrap_or(column);
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" => None,
        "1" | "true" | "yes" => Some(short.to_string()),
        _ => Some(format!("{short}={}", value.trim())),
    }
}

impl Labeler {
    /// Builds the concept list. `label_values` holds, per label column of the dataset, its
    /// distinct non-null values (from a scan of the shards). `wordpiece`: tokens are WordPiece
    /// (`##` continuations) rather than byte-level BPE.
    pub fn new(
        cfg: &ConceptConfig,
        label_values: &[(String, Vec<String>)],
        wordpiece: bool,
    ) -> Result<Labeler, ConceptError> {
        let builtin = |error| ConceptError::Pattern { path: None, error };
        let mut l = Labeler {
            names: vec![],
            sources: vec![],
            rules: vec![],
            words: HashMap::new(),
            labels: vec![],
            label_columns: vec![],
            wordpiece,
            number: Regex::new(r"\d+(?:[.,]\d+)*").map_err(builtin)?,
            url: Regex::new(r"(?i)\b(?:https?://|www\.)[^\s<>]+").map_err(builtin)?,
        };
        let all = cfg.taggers.iter().any(|t| t == "all");
        for (i, (name, _)) in TAGGERS.iter().enumerate() {
            if all || cfg.taggers.iter().any(|t| t == name) {
                let c = l.add(name, "tagger")?;
                l.rules.push((c, Rule::Tagger(i)));
            }
        }
        for t in &cfg.taggers {
            if t != "all" && !TAGGERS.iter().any(|(n, _)| n == t) {
                let names: Vec<&str> = TAGGERS.iter().map(|(n, _)| *n).collect();
                return Err(ConceptError::UnknownTagger {
                    tagger: t.clone(),
                    known: names.join(", "),
                });
            }
        }
        for path in &cfg.lexicons {
            l.add_lexicon(path)?;
        }
        for (name, pattern) in &cfg.regex {
            let re = Regex::new(pattern).map_err(|e| {
                // The parser's message spans several lines; its last line says what is wrong.
                let text = e.to_string();
                let why = text
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("error: ");
                ConceptError::BadPattern {
                    name: name.clone(),
                    pattern: pattern.clone(),
                    why: why.to_string(),
                }
            })?;
            let c = l.add(name, "regex")?;
            l.rules.push((c, Rule::Pattern(re)));
        }
        l.add_label_columns(cfg, label_values)?;
        if l.names.is_empty() {
            return Err(ConceptError::NoConcepts);
        }
        Ok(l)
    }

    /// The concepts of the label columns asked for (all when `cfg` names none): one per value
    /// that makes a concept, in value order.
    fn add_label_columns(
        &mut self,
        cfg: &ConceptConfig,
        label_values: &[(String, Vec<String>)],
    ) -> Result<(), ConceptError> {
        let wanted: Vec<&String> = match &cfg.label_columns {
            None => label_values.iter().map(|(c, _)| c).collect(),
            Some(cols) => {
                for c in cols {
                    if !label_values.iter().any(|(n, _)| n == c) {
                        let have: Vec<&str> =
                            label_values.iter().map(|(n, _)| n.as_str()).collect();
                        return Err(ConceptError::UnknownLabelColumn {
                            column: c.clone(),
                            have: if have.is_empty() {
                                "none".into()
                            } else {
                                have.join(", ")
                            },
                        });
                    }
                }
                cols.iter().collect()
            }
        };
        for column in wanted {
            let mut values = label_values
                .iter()
                .find(|(n, _)| n == column)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            values.sort();
            let mut rule = LabelRule {
                column: self.label_columns.len(),
                values: HashMap::new(),
            };
            for v in &values {
                if let Some(name) = label_concept(column, v) {
                    let c = match self.names.iter().position(|n| *n == name) {
                        Some(c) => c,
                        None => self.add(&name, "label")?,
                    };
                    rule.values.insert(v.clone(), c);
                }
            }
            self.label_columns.push(column.clone());
            self.labels.push(rule);
        }
        Ok(())
    }

    fn add(&mut self, name: &str, source: &'static str) -> Result<usize, ConceptError> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Err(ConceptError::Twice {
                name: name.to_string(),
                first: self.sources[i],
                second: source,
            });
        }
        if self.names.len() == MAX_CONCEPTS {
            return Err(ConceptError::TooMany { max: MAX_CONCEPTS });
        }
        self.names.push(name.to_string());
        self.sources.push(source);
        Ok(self.names.len() - 1)
    }

    fn add_lexicon(&mut self, path: &Path) -> Result<(), ConceptError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConceptError::LexiconRead {
            path: path.into(),
            error,
        })?;
        let table: BTreeMap<String, Vec<String>> =
            toml::from_str(&text).map_err(|error| ConceptError::LexiconToml {
                path: path.into(),
                error,
            })?;
        for (concept, entries) in table {
            let c = self
                .add(&concept, "lexicon")
                .map_err(|e| ConceptError::Lexicon {
                    path: path.into(),
                    error: Box::new(e),
                })?;
            let mut phrases = vec![];
            for entry in entries {
                let e = entry.trim().to_lowercase();
                if e.contains(char::is_whitespace) {
                    phrases.push(
                        regex::escape(&e)
                            .replace(r"\ ", r"\s+")
                            .replace(' ', r"\s+"),
                    );
                } else if !e.is_empty() {
                    self.words.entry(e).or_default().push(c);
                }
            }
            if !phrases.is_empty() {
                let re = Regex::new(&format!(r"(?i)\b(?:{})\b", phrases.join("|"))).map_err(
                    |error| ConceptError::Pattern {
                        path: Some(path.into()),
                        error,
                    },
                )?;
                self.rules.push((c, Rule::Pattern(re)));
            }
        }
        Ok(())
    }

    /// Concept names, in bit order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Source of each concept: `tagger`, `lexicon`, `regex` or `label`.
    pub fn sources(&self) -> &[&'static str] {
        &self.sources
    }

    /// The label columns the labeler reads, in the order `label` expects them.
    pub fn label_columns(&self) -> &[String] {
        &self.label_columns
    }

    /// Concept sets of one context's tokens. `labels[k][t]` is label column k on token t.
    /// Special tokens get no concepts.
    pub fn label(
        &self,
        tokens: &[String],
        special: &[bool],
        labels: &[&[Option<String>]],
    ) -> Vec<u128> {
        let n = tokens.len();
        let mut out = vec![0u128; n];
        let (text, spans) = self.context_text(tokens, special);
        for (ti, &(start, end)) in spans.iter().enumerate() {
            if special[ti] || start == end {
                continue;
            }
            out[ti] = self.token_concepts(&text, start, end);
        }
        // Context-level matches: every token overlapping a match gets the concept.
        let mut mark = |c: usize, re: &Regex| {
            for m in re.find_iter(&text) {
                for (ti, &(s, e)) in spans.iter().enumerate() {
                    if s < e && s < m.end() && m.start() < e {
                        out[ti] |= 1 << c;
                    }
                }
            }
        };
        for (c, rule) in &self.rules {
            match rule {
                Rule::Tagger(k) if TAGGERS[*k].0 == "number" => mark(*c, &self.number),
                Rule::Tagger(k) if TAGGERS[*k].0 == "url" => mark(*c, &self.url),
                Rule::Pattern(re) => mark(*c, re),
                Rule::Tagger(_) => {}
            }
        }
        for rule in &self.labels {
            let col = labels[rule.column];
            for (ti, v) in col.iter().enumerate() {
                if special[ti] {
                    continue;
                }
                if let Some(&c) = v.as_ref().and_then(|v| rule.values.get(v)) {
                    out[ti] |= 1 << c;
                }
            }
        }
        out
    }

    /// The context text and each token's byte span in it (empty for special tokens).
    fn context_text(&self, tokens: &[String], special: &[bool]) -> (String, Vec<(usize, usize)>) {
        let mut text = String::new();
        let mut spans = Vec::with_capacity(tokens.len());
        for (t, &sp) in tokens.iter().zip(special) {
            if sp {
                spans.push((text.len(), text.len()));
                continue;
            }
            let piece = if self.wordpiece {
                match t.strip_prefix("##") {
                    Some(rest) => rest,
                    None => {
                        if !text.is_empty() {
                            text.push(' ');
                        }
                        t.as_str()
                    }
                }
            } else {
                t.as_str()
            };
            let start = text.len();
            text.push_str(piece);
            spans.push((start, text.len()));
        }
        (text, spans)
    }

    /// The token-level concepts of the token spanning `text[start..end]`: the token taggers and
    /// the word lists.
    fn token_concepts(&self, text: &str, start: usize, end: usize) -> u128 {
        let piece = &text[start..end];
        let word = word_around(text, start, piece);
        let mut set = 0u128;
        for (c, rule) in &self.rules {
            let Rule::Tagger(k) = rule else { continue };
            if token_tagger_hits(TAGGERS[*k].0, piece, word) {
                set |= 1 << c;
            }
        }
        if let Some((_, _, w)) = word {
            if let Some(cs) = self.words.get(&w.to_lowercase()) {
                for &c in cs {
                    set |= 1 << c;
                }
            }
        }
        set
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// The token's word: the alphanumeric run around its first alphanumeric character, as (the
/// word's start, that character's offset, the word); `piece` starts at `text[start..]`.
fn word_around<'t>(text: &'t str, start: usize, piece: &str) -> Option<(usize, usize, &'t str)> {
    piece
        .char_indices()
        .find(|(_, c)| is_word(*c))
        .map(|(i, _)| {
            let at = start + i;
            let ws = text[..at]
                .char_indices()
                .rev()
                .take_while(|(_, c)| is_word(*c))
                .last()
                .map_or(at, |(j, _)| j);
            let we = text[at..]
                .char_indices()
                .find(|(_, c)| !is_word(*c))
                .map_or(text.len(), |(j, _)| at + j);
            (ws, at, &text[ws..we])
        })
}

/// Whether the token tagger `name` marks a token `piece` (with its `word`, see [`word_around`]).
fn token_tagger_hits(name: &str, piece: &str, word: Option<(usize, usize, &str)>) -> bool {
    let stripped = piece.trim_start();
    match name {
        "digit" => !stripped.is_empty() && stripped.bytes().all(|b| b.is_ascii_digit()),
        "punctuation" => {
            !stripped.is_empty()
                && stripped
                    .chars()
                    .all(|c| !c.is_alphanumeric() && !c.is_whitespace())
        }
        "sentence_end" => matches!(stripped, "." | "!" | "?"),
        "capitalized" => stripped.chars().next().is_some_and(char::is_uppercase),
        "all_caps" => word.is_some_and(|(_, _, w)| {
            w.chars().filter(|c| c.is_alphabetic()).count() >= 2
                && w.chars().all(|c| !c.is_alphabetic() || c.is_uppercase())
        }),
        "word_start" => word.is_some_and(|(ws, at, _)| {
            ws == at && piece.trim_start().starts_with(|c: char| is_word(c))
        }),
        "whitespace" => stripped.is_empty(),
        "newline" => piece.contains('\n'),
        "code" => stripped
            .chars()
            .any(|c| "{}[]();=<>\\|&*#$@^~`_".contains(c)),
        // Context-level taggers are applied in `label`.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn names(l: &Labeler, set: u128) -> Vec<&str> {
        (0..l.names().len())
            .filter(|&c| set >> c & 1 == 1)
            .map(|c| l.names()[c].as_str())
            .collect()
    }

    #[test]
    fn taggers_on_bpe_tokens() {
        let l = Labeler::new(&ConceptConfig::default_all(), &[], false).unwrap();
        let t = toks(&[
            "<|endoftext|>",
            "Visit",
            " www",
            ".ex",
            "ample",
            ".com",
            " in",
            " 2024",
            ".",
            "\n",
            " NASA",
            " x",
            "=",
            "3",
            ".14",
        ]);
        let mut special = vec![false; t.len()];
        special[0] = true;
        let s = l.label(&t, &special, &[]);
        assert_eq!(s[0], 0);
        assert_eq!(names(&l, s[1]), ["capitalized", "word_start"]);
        assert_eq!(names(&l, s[2]), ["word_start", "url"]);
        assert_eq!(names(&l, s[4]), ["url"]);
        assert_eq!(names(&l, s[7]), ["digit", "number", "word_start"]);
        assert_eq!(names(&l, s[8]), ["punctuation", "sentence_end"]);
        assert_eq!(names(&l, s[9]), ["whitespace", "newline"]);
        assert_eq!(names(&l, s[10]), ["capitalized", "all_caps", "word_start"]);
        assert_eq!(names(&l, s[12]), ["punctuation", "code"]);
        // "3.14" is one number over two tokens; "3" starts a word after "=".
        assert_eq!(names(&l, s[13]), ["digit", "number", "word_start"]);
        assert_eq!(names(&l, s[14]), ["number"]);
    }

    #[test]
    fn lexicons_match_whole_words_and_phrases_regex_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let lex = dir.path().join("colours.toml");
        std::fs::write(
            &lex,
            "colour = [\"red\", \"Blue\", \"navy blue\"]\nanimal = [\"cat\"]\n",
        )
        .unwrap();
        let cfg = ConceptConfig {
            taggers: vec![],
            lexicons: vec![lex],
            regex: BTreeMap::from([("year".to_string(), r"\b(19|20)\d\d\b".to_string())]),
            label_columns: None,
        };
        let values = vec![(
            "label.sentiment".to_string(),
            vec!["pos".into(), "neg".into()],
        )];
        let l = Labeler::new(&cfg, &values, false).unwrap();
        assert_eq!(
            l.names(),
            ["animal", "colour", "year", "sentiment=neg", "sentiment=pos"].map(String::from)
        );
        let t = toks(&[
            " The", " red", "dish", " cat", "s", " navy", " blue", " in", " 1999",
        ]);
        let lab: Vec<Option<String>> = vec![Some("pos".into()); t.len()];
        let s = l.label(&t, &vec![false; t.len()], &[&lab]);
        assert_eq!(names(&l, s[0]), ["sentiment=pos"]);
        // " red" + "dish" is the word "reddish": not a colour.
        assert_eq!(names(&l, s[1]), ["sentiment=pos"]);
        // "cats" is not "cat": lexicons match whole words.
        assert_eq!(names(&l, s[3]), ["sentiment=pos"]);
        assert_eq!(names(&l, s[5]), ["colour", "sentiment=pos"]);
        assert_eq!(names(&l, s[6]), ["colour", "sentiment=pos"]);
        assert_eq!(names(&l, s[8]), ["year", "sentiment=pos"]);
    }

    #[test]
    fn wordpiece_words_are_glued() {
        let dir = tempfile::tempdir().unwrap();
        let lex = dir.path().join("l.toml");
        std::fs::write(&lex, "animal = [\"elephant\"]\n").unwrap();
        let cfg = ConceptConfig {
            taggers: vec!["word_start".into()],
            lexicons: vec![lex],
            ..ConceptConfig::default()
        };
        let l = Labeler::new(&cfg, &[], true).unwrap();
        let t = toks(&["[CLS]", "an", "ele", "##phant", "[SEP]"]);
        let s = l.label(&t, &[true, false, false, false, true], &[]);
        assert_eq!(names(&l, s[1]), ["word_start"]);
        assert_eq!(names(&l, s[2]), ["word_start", "animal"]);
        assert_eq!(names(&l, s[3]), ["animal"]);
    }

    #[test]
    fn bad_config_is_named() {
        let cfg = ConceptConfig {
            taggers: vec!["digits".into()],
            ..ConceptConfig::default()
        };
        let e = Labeler::new(&cfg, &[], false).err().unwrap();
        assert!(matches!(&e, ConceptError::UnknownTagger { tagger, .. } if tagger == "digits"));
        assert!(
            e.to_string()
                .starts_with("unknown tagger `digits`; the taggers are: all, digit"),
            "{e}"
        );
        let cfg = ConceptConfig {
            label_columns: Some(vec!["label.topic".into()]),
            ..ConceptConfig::default()
        };
        let e = Labeler::new(&cfg, &[], false).err().unwrap();
        assert_eq!(
            e.to_string(),
            "label column `label.topic` is not in the dataset (it has: none)"
        );
    }
}
