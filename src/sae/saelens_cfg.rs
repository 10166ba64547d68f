//! `cfg.json` as our SAELens export writes it ([`export_saelens`](super::saelens::export_saelens)).
//!
//! Reading a downloaded SAE stays lenient (`checkpoint::load_saelens` reads the keys it needs
//! from any SAELens version); this type is the contract of our own exports, read back by
//! `unravel run`'s summary. Fields are declared in sorted order: the file is written through a
//! `serde_json::Value`, and this type keeps its bytes (`the_export_reads_back_and_writes_the_same_bytes`).

use serde::{Deserialize, Serialize};

/// File name of an SAE's config in a SAELens-layout folder.
pub const CFG_FILE: &str = "cfg.json";

/// Our export's `cfg.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeLensCfg {
    pub apply_b_dec_to_input: bool,
    /// `standard` (ReLU), or `gated`.
    pub architecture: String,
    pub d_in: usize,
    pub d_sae: usize,
    pub device: String,
    pub dtype: String,
    pub metadata: SaeLensMetadata,
    pub normalize_activations: String,
    pub reshape_activations: String,
}

/// `cfg.json`'s `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeLensMetadata {
    pub context_size: usize,
    pub dataset_path: String,
    pub hook_head_index: Option<usize>,
    pub hook_name: String,
    pub model_name: String,
    pub prepend_bos: bool,
    pub sae_lens_training_version: Option<String>,
    pub sae_lens_version: String,
    pub trained_with: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::checkpoint::{export_saelens, ExportMeta};

    #[test]
    fn the_export_reads_back_and_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let sae = crate::sae::Sae::zeros(4, 8, true);
        let meta = ExportMeta {
            model_name: "gpt2".into(),
            hook_name: "blocks.0.hook_resid_post".into(),
            context_size: 64,
            prepend_bos: true,
            dataset_path: "acts/x".into(),
        };
        export_saelens(dir.path(), &sae, &[0.5; 8], &meta).unwrap();
        let text = std::fs::read_to_string(dir.path().join(CFG_FILE)).unwrap();
        let cfg: SaeLensCfg = serde_json::from_str(&text).unwrap();
        assert_eq!((cfg.d_in, cfg.d_sae), (4, 8));
        assert_eq!(cfg.metadata.hook_name, "blocks.0.hook_resid_post");
        assert_eq!(serde_json::to_string_pretty(&cfg).unwrap(), text);
    }
}
