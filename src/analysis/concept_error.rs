//! [`ConceptError`]: a concepts file, lexicon or concept list the audit cannot use. Each names
//! the file or the concept at fault and what to do.

use std::path::PathBuf;

/// What is wrong with the concepts asked for.
#[derive(Debug, thiserror::Error)]
pub enum ConceptError {
    /// The concepts TOML file cannot be read.
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The concepts TOML file does not parse (or has unknown keys).
    #[error("{path}: {error}")]
    Toml {
        path: PathBuf,
        error: toml::de::Error,
    },
    /// A tagger name that is not built in; `known` lists those that are.
    #[error("unknown tagger `{tagger}`; the taggers are: all, {known}")]
    UnknownTagger { tagger: String, known: String },
    /// A regex concept whose pattern does not compile; `why` is the parser's last line.
    #[error("regex concept `{name}`: bad pattern `{pattern}`: {why}")]
    BadPattern {
        name: String,
        pattern: String,
        why: String,
    },
    /// A label column the dataset does not have; `have` lists those it has (or "none").
    #[error("label column `{column}` is not in the dataset (it has: {have})")]
    UnknownLabelColumn { column: String, have: String },
    /// Nothing to label with.
    #[error(
        "no concepts to audit: give taggers, lexicons, regexes or label columns (see \
         configs/concepts.toml)"
    )]
    NoConcepts,
    /// Two sources define a concept of the same name.
    #[error("concept `{name}` is defined twice; rename one (sources: {first} and {second})")]
    Twice {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    /// More concepts than the bit set holds.
    #[error(
        "more than {max} concepts; audit fewer at once (choose taggers, lexicons or label columns)"
    )]
    TooMany { max: usize },
    /// A lexicon file that cannot be read.
    #[error("lexicon {path}: {error}")]
    LexiconRead {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A lexicon file that is not `concept = ["word", ...]` lines.
    #[error("lexicon {path}: {error}; expected `concept = [\"word\", ...]` lines")]
    LexiconToml {
        path: PathBuf,
        error: toml::de::Error,
    },
    /// A concept of a lexicon that cannot be added (see [`ConceptError::Twice`],
    /// [`ConceptError::TooMany`]).
    #[error("lexicon {path}: {error}")]
    Lexicon {
        path: PathBuf,
        error: Box<ConceptError>,
    },
    /// A regular expression that does not compile: a lexicon's phrases, or a built-in pattern.
    #[error("{}{error}", lexicon_prefix(path))]
    Pattern {
        /// The lexicon whose phrases it matches; None for a built-in pattern.
        path: Option<PathBuf>,
        error: regex::Error,
    },
}

/// `lexicon PATH: ` when the pattern comes from a lexicon.
fn lexicon_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("lexicon {}: ", p.display()))
        .unwrap_or_default()
}
