//! Analyses of activation datasets: the polysemanticity audit (units × concepts).
//!
//! concepts.rs  — concept labels per token (taggers, lexicons, regexes, label columns)
//! blocks.rs    — a dataset read back as blocks of whole contexts (tokens, labels, one hook)
//! audit.rs     — streaming scores of every unit × concept and the classification
//! report.rs    — the result as written to audit.json

pub mod analyze;
pub mod audit;
pub mod blocks;
pub mod concepts;
pub mod label_values;
pub mod report;
pub mod superposition;
pub mod weights;
