//! [`HubRepo`]: the files of one model or SAE repo on the hub, read through the standard cache:
//! cached files first (works offline), then the network unless offline.

use std::path::PathBuf;

use hf_hub::api::sync::{ApiError, ApiRepo};
use hf_hub::{CacheRepo, Repo, RepoType};

use super::HubOptions;

/// A hub repo that cannot be reached or lacks a file.
#[derive(Debug, thiserror::Error)]
#[error("hub repo `{repo}` (revision {revision}): {reason}")]
pub struct HubError {
    pub repo: String,
    pub revision: String,
    pub reason: String,
}

/// One hub repo (models and SAEs), read through the standard cache.
pub struct HubRepo {
    repo: String,
    revision: String,
    cached: CacheRepo,
    api: Option<ApiRepo>,
    /// Where the cache is, for messages.
    pub cache_path: PathBuf,
}

impl HubRepo {
    pub fn open(repo: &str, hub: &HubOptions) -> Result<HubRepo, HubError> {
        let cache = hub.cache();
        let hf_repo = Repo::with_revision(repo.into(), RepoType::Model, hub.revision.clone());
        let cached = cache.repo(hf_repo.clone());
        let api = if hub.offline {
            None
        } else {
            let api = super::client(&cache).map_err(|e| HubError {
                repo: repo.into(),
                revision: hub.revision.clone(),
                reason: e.to_string(),
            })?;
            Some(api.repo(hf_repo))
        };
        Ok(HubRepo {
            repo: repo.into(),
            revision: hub.revision.clone(),
            cached,
            api,
            cache_path: cache.path().clone(),
        })
    }

    pub fn error(&self, reason: String) -> HubError {
        HubError {
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            reason,
        }
    }

    /// The local path of `file` (downloading it if needed); `Ok(None)`: the repo has no such file.
    pub fn get(&self, file: &str) -> Result<Option<PathBuf>, HubError> {
        if let Some(p) = self.cached.get(file) {
            return Ok(Some(p));
        }
        match &self.api {
            None => Ok(None),
            Some(api) => match api.get(file) {
                Ok(p) => Ok(Some(p)),
                Err(ApiError::RequestError(e))
                    if matches!(*e, ureq::Error::Status(404, _)) =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.error(format!(
                    "cannot download {file}: {e}; check the network or set HF_HUB_OFFLINE=1 to use the cache only"
                ))),
            },
        }
    }
}
