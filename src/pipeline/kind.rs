//! The kinds of stage an `unravel run` config can hold, in the order they run.

use serde::Serialize;

/// Stage kinds, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Extract,
    Synth,
    Plant,
    Train,
    Eval,
    Audit,
    Verify,
    Analyze,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Extract,
        Kind::Synth,
        Kind::Plant,
        Kind::Train,
        Kind::Eval,
        Kind::Audit,
        Kind::Verify,
        Kind::Analyze,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Extract => "extract",
            Kind::Synth => "synth",
            Kind::Plant => "plant",
            Kind::Train => "train",
            Kind::Eval => "eval",
            Kind::Audit => "audit",
            Kind::Verify => "verify",
            Kind::Analyze => "analyze",
        }
    }

    /// Kinds that write an activation dataset.
    pub(super) fn makes_dataset(self) -> bool {
        matches!(self, Kind::Extract | Kind::Synth | Kind::Plant)
    }
}
