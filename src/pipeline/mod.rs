//! `unravel run`: one config chains the stages (extract / synth / plant → train → eval → audit →
//! verify → analyze) into one run folder, skipping stages already complete, and ends with
//! `summary.json` and an index page (`index`).
//!
//! `plan` turns the config into typed stage specs (`spec`, which alone writes their command
//! lines), `state` tracks which stages are done, `summary` reads back each stage's typed output
//! file into its key numbers (`results`) and checks the thresholds. The binary runs the commands.

pub mod index;
pub mod kind;
pub mod plan;
pub mod results;
pub mod spec;
pub mod state;
pub mod summary;
