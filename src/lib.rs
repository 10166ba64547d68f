//! unravel: take features out of superposition.
//!
//! The library behind the `unravel` command line. Data flows like this:
//!
//! ```text
//! corpus, models ──▶ extract ──▶ store ◀── synth (planted data in the same shard format)
//!                    (trace)       │
//!                                  ▼
//!                                 sae ──▶ synth::verify, analysis ──▶ report ──▶ pipeline
//! toy: on its own
//! ```
//!
//! The stages below are listed in that order; a stage imports only stages above it
//! (docs/design.md, "Layering", names the few imports that still break the rule), and the
//! utilities in the last row serve them all.
//!
//! | module | what it does |
//! |---|---|
//! | [`models`] | hooked GPT-2, DistilBERT and BERT on candle, hook names, model files, the tokenizer |
//! | [`corpus`] | documents from txt / jsonl / parquet / `hf://datasets`, tokenized and packed into fixed-length contexts |
//! | [`store`] | the activation dataset: parquet shards, `manifest.json`, the checks every read passes, the shuffled resumable loader, `unravel inspect` |
//! | [`extract`] | `unravel extract`: corpus → hooked forward → shards (packer thread, forward workers, writer thread) |
//! | [`trace`] | `unravel trace`: the hooks of a few texts into one safetensors file |
//! | [`sae`] | sparse autoencoders: model, two training engines, recipes, training loop, evaluation, checkpoints and SAELens export, CE/KL splicing |
//! | [`synth`] | planted features, planted polysemantic neurons, planting into real shards, recovery metrics against the truth |
//! | [`analysis`] | the polysemanticity audit (concepts, units × concepts scores, `audit.json`) and superposition metrics |
//! | [`report`] | SVG plots, the audit's HTML report, the run's index page |
//! | [`pipeline`] | `unravel run`: a config → stage command lines, stage records, the summary and its checks |
//! | [`toy`] | toy models of superposition (own batched trainer, metrics, plots) |
//! | [`kernels`] | the shared CPU kernels under every stage: GEMM wrappers, LayerNorm, attention, GELU, row kernels, dot/axpy, SIMD dispatch |
//! | [`hub`] | the one Hugging Face hub client (models, datasets, SAEs) and `HF_HUB_OFFLINE` |
//! | [`device`], [`io`], [`folder_lock`], [`memory`] | `--device`/`--dtype`; atomic writes; one writer per folder; refusing sizes that cannot fit |
//!
//! The command line itself (flags → these modules → printing, exit codes) is the binary crate:
//! `src/main.rs` and `src/cmd_*.rs`. Definitions of every metric: docs/metrics.md; file
//! formats: docs/formats.md; architecture, recipes and numerics: docs/design.md.

pub mod analysis;
pub mod corpus;
pub mod device;
pub mod extract;
pub mod folder_lock;
pub mod hub;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod models;
pub mod pipeline;
pub mod plot;
pub mod report;
pub mod sae;
pub mod sorted_json;
pub mod store;
pub mod synth;
pub mod toy;
pub mod trace;
