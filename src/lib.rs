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
//! (docs/design.md, "Layering"; `tests/architecture.rs` checks it), and the ground floor in the
//! last rows (kernels, hub, plot and the utilities) serves them all.
//!
//! | module | what it does |
//! |---|---|
//! | [`models`] | hooked GPT-2, DistilBERT and BERT on candle, hook names, model files, the tokenizer |
//! | [`corpus`] | documents from txt / jsonl / parquet / `hf://datasets`, tokenized and packed into fixed-length contexts |
//! | [`store`] | the activation dataset: parquet shards, `__unravel__/manifest.json`, the checks every read passes, the shuffled resumable loader, `unravel inspect` |
//! | [`extract`] | `unravel extract`: corpus → hooked forward → shards (packer thread, forward workers, writer thread) |
//! | [`trace`] | `unravel trace`: the hooks of a few texts into one safetensors file |
//! | [`import`] | `unravel import`: activations from .npy / .npz / .safetensors / parquet / Arrow / SAELens caches into a dataset |
//! | [`sae`] | sparse autoencoders: model, two training engines, recipes, training loop, evaluation (`unravel eval`), checkpoints, SAELens import/export, CE/KL splicing |
//! | [`synth`] | planted features, planted polysemantic neurons, planting into real shards, recovery metrics against the truth (`unravel verify`) |
//! | [`analysis`] | the polysemanticity audit (concepts, units × concepts scores, `audit.json`) and superposition metrics (`unravel analyze`) |
//! | [`report`] | SVG plots, the audit's HTML report and its unit browser (`units/`: every unit's dashboard) |
//! | [`pipeline`] | `unravel run`: a config → typed stage specs and their command lines, stage records, typed stage results, the summary and its checks, the run's index page |
//! | [`toy`] | toy models of superposition (own batched trainer, metrics, plots) |
//! | `cli` (binary crate) | the command line, one file per command in `src/cli/`, the top layer, over all of these |
//! | [`kernels`] | the shared CPU kernels under every stage: GEMM wrappers, LayerNorm, attention, GELU, row kernels, dot/axpy, SIMD dispatch |
//! | [`hub`] | the one Hugging Face hub client (models, datasets, SAEs) and `HF_HUB_OFFLINE` |
//! | [`plot`] | the shared SVG toolkit of `report` and `toy`: escaping, colour scales, number labels, SVG elements, writing a figure (SVG + its PNG copy) |
//! | [`device`], [`io`], [`folder_lock`], [`memory`], [`sorted_json`] | `--device`/`--dtype`; atomic writes; one writer per folder; refusing sizes that cannot fit; JSON with sorted keys |
//!
//! The command line itself (flags → these modules → printing, exit codes) is the binary crate:
//! `src/main.rs` (parse, dispatch, exit codes) and `src/cli/` (one file per command, the shared
//! flags, progress bar and output helpers beside them). Definitions of every metric:
//! docs/metrics.md; file formats: docs/formats.md; architecture, recipes and numerics:
//! docs/design.md.

pub mod analysis;
pub mod corpus;
pub mod device;
pub mod extract;
pub mod flag_values;
pub mod folder_lock;
pub mod hub;
pub mod import;
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
