//! Analyses of activation datasets: the polysemanticity audit (units × concepts) and the
//! superposition metrics of `unravel analyze`. Definitions: docs/metrics.md.
//!
//! concepts.rs  — concept labels per token (taggers, lexicons, regexes, label columns)
//! concept_error.rs — what is wrong with the concepts asked for
//! label_values.rs — the distinct values of a dataset's label columns (one concept per value)
//! blocks.rs    — a dataset read back as blocks of whole contexts (tokens, labels, one hook)
//! audit/       — streaming scores of every unit × concept and the classification
//! report.rs    — the result as written to audit.json
//! superposition.rs — effective dimensionality and rank, sparsity, interference, PCA of one hook
//!                    (streamed), and the singular value spectrum of a weight matrix
//! analyze.rs   — `unravel analyze`: every chosen hook of a dataset in one streaming pass
//! analysis_report.rs — analysis.json
//! weights.rs   — `analyze --weights`: the spectrum of every weight matrix, weights.json

pub mod analysis_report;
pub mod analyze;
pub mod audit;
pub mod blocks;
pub mod concept_error;
pub mod concepts;
pub mod label_values;
pub mod logit_effect;
pub mod report;
pub mod superposition;
pub mod weights;
