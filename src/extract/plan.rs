//! [`ExtractPlan`]: what `extract` is asked to do, the checks made on it before anything is read
//! or written, and the manifest header it gives the dataset.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ExtractError;
use crate::corpus::{BosPolicy, Corpus, CorpusOptions, PackOptions};
use crate::models::hooks::HookSet;
use crate::models::load::ModelFiles;
use crate::models::{Arch, Model};
use crate::store::{Bos, CorpusInfo, HookInfo, Manifest, ModelInfo, Part, StorageDtype};

/// Everything `extract` needs besides the model.
#[derive(Clone, Debug)]
pub struct ExtractPlan {
    pub corpus: PathBuf,
    pub corpus_options: CorpusOptions,
    pub hooks: HookSet,
    pub ctx: usize,
    /// `None` picks the model's default (GPT-2: endoftext, encoders: cls-sep).
    pub bos: Option<BosPolicy>,
    pub max_tokens: Option<u64>,
    pub store_dtype: StorageDtype,
    /// Contexts per forward pass.
    pub batch: usize,
    /// Rows per shard (a shard closes after the batch that reaches it).
    pub shard_tokens: usize,
    /// zstd level of the shards; 0 stores them uncompressed.
    pub zstd_level: i32,
    pub out: PathBuf,
    pub resume: bool,
    /// 1-based (index, count).
    pub part: Option<(usize, usize)>,
}

/// The BOS policy a model uses when the user does not choose one.
pub fn default_bos(arch: Arch) -> BosPolicy {
    if arch.is_causal() {
        BosPolicy::EndOfText
    } else {
        BosPolicy::ClsSep
    }
}

/// The checks made before anything is read or written, in this order: the BOS policy against
/// the model, the batch and shard sizes, the packing options, the context against the model.
pub(super) fn check(plan: &ExtractPlan, model: &Model, bos: BosPolicy) -> Result<(), ExtractError> {
    check_bos(model.arch(), bos)?;
    check_sizes(plan)?;
    PackOptions {
        ctx: plan.ctx,
        bos,
        max_tokens: plan.max_tokens,
        start_context_id: 0,
    }
    .validate()?;
    if plan.ctx > model.max_positions() {
        return Err(ExtractError::BadOption {
            flag: "--ctx",
            reason: format!(
                "{} is longer than the model's {} positions",
                plan.ctx,
                model.max_positions()
            ),
        });
    }
    Ok(())
}

/// Refuses batch and shard sizes of 0 (a batch of no context would never end).
fn check_sizes(plan: &ExtractPlan) -> Result<(), ExtractError> {
    if plan.batch == 0 {
        return Err(ExtractError::BadOption {
            flag: "--batch",
            reason: "is 0; give the number of contexts per forward pass (1 or more; default 8)"
                .into(),
        });
    }
    if plan.shard_tokens == 0 {
        return Err(ExtractError::BadOption {
            flag: "--shard-tokens",
            reason: "is 0; give the rows per shard (1 or more; default 65536)".into(),
        });
    }
    Ok(())
}

fn check_bos(arch: Arch, bos: BosPolicy) -> Result<(), ExtractError> {
    let ok = match bos {
        BosPolicy::ClsSep => !arch.is_causal(),
        BosPolicy::EndOfText | BosPolicy::None => arch.is_causal(),
    };
    if ok {
        Ok(())
    } else {
        Err(ExtractError::BadOption {
            flag: "--bos",
            reason: format!("`{}` does not fit a {} model", bos.name(), arch.name()),
        })
    }
}

/// The manifest header of this run: what the data is and how it was made.
pub(super) fn header_manifest(
    model: &Model,
    files: &ModelFiles,
    tokenizer_json: &Path,
    random_seed: Option<u64>,
    plan: &ExtractPlan,
    bos: BosPolicy,
    corpus: &Corpus,
) -> Result<Manifest, ExtractError> {
    let info = ModelInfo {
        id: files.id.clone(),
        revision: files.revision.clone(),
        arch: model.arch().name().into(),
        config_sha256: sha256_file(&files.config)?,
        // Hashing multi-GB weights costs seconds; the config, tokenizer and revision pin the model.
        weights_sha256: None,
        random_weights: random_seed.is_some(),
        seed: random_seed,
    };
    let hooks = plan
        .hooks
        .iter()
        .map(|p| HookInfo {
            name: p.name(),
            d: model.hook_dim(p),
            dtype: plan.store_dtype,
        })
        .collect();
    let corpus_info = CorpusInfo {
        sources: corpus
            .sources()
            .iter()
            .map(|s| s.path.display().to_string())
            .collect(),
        sha256: corpus.sha256().into(),
        format: corpus.format().name().into(),
        text_field: Some(plan.corpus_options.text_field.clone()),
        documents: 0,
        empty_documents: 0,
    };
    let bos = match bos {
        BosPolicy::EndOfText => Bos::EndOfText,
        BosPolicy::None => Bos::None,
        BosPolicy::ClsSep => Bos::ClsSep,
    };
    let mut m = Manifest::new(
        info,
        sha256_file(tokenizer_json)?,
        hooks,
        plan.ctx,
        bos,
        corpus_info,
    );
    m.label_columns = plan
        .corpus_options
        .label_fields
        .iter()
        .map(|f| format!("label.{f}"))
        .collect();
    m.max_tokens = plan.max_tokens;
    if let Some((i, n)) = plan.part {
        m.part = Some(
            Part::new(i as u32, n as u32).map_err(|e| ExtractError::BadOption {
                flag: "--part",
                reason: e.to_string(),
            })?,
        );
    }
    Ok(m)
}

fn sha256_file(path: &Path) -> Result<String, ExtractError> {
    let bytes = std::fs::read(path).map_err(|e| ExtractError::Io {
        path: path.into(),
        reason: e.to_string(),
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}
