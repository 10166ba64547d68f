//! The Hugging Face hub in one place, for models, datasets and SAEs: the options (revision, cache
//! folder, offline), the one reading of `HF_HUB_OFFLINE`, the cache and the download client.
//!
//! - [`repo`]: [`HubRepo`], single files of a model or SAE repo (cache first, then the network).
//! - [`dataset`]: `--corpus hf://datasets/...` specs, whole sets of dataset files.
//!
//! Every reader goes through the standard hub cache (`HF_HOME`), so what one command downloaded
//! the next finds offline.

use std::path::PathBuf;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::Cache;

pub mod dataset;
pub mod repo;

pub use repo::{HubError, HubRepo};

/// How to reach the Hugging Face hub.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Branch, tag or commit (`--revision`).
    pub revision: String,
    /// The hub cache folder (`HF_HOME/hub` or `~/.cache/huggingface/hub` when not set).
    pub cache_dir: Option<PathBuf>,
    /// Use the cache only (`--offline` or `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            revision: "main".into(),
            cache_dir: None,
            offline: offline_from_env(),
        }
    }
}

impl HubOptions {
    /// The hub cache: `cache_dir`, or the standard one (`HF_HOME`).
    pub fn cache(&self) -> Cache {
        match &self.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        }
    }
}

/// `HF_HUB_OFFLINE=1` (or `true`): the cache only.
fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

/// The download client: files land in `cache`, with a progress bar.
pub fn client(cache: &Cache) -> Result<Api, ApiError> {
    ApiBuilder::from_cache(cache.clone())
        .with_progress(true)
        .build()
}
