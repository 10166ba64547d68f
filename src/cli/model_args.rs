//! The model flags `trace` and `extract` share: which model, where from, on which device.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use unravel::device::{parse_device, parse_dtype};
use unravel::hub::HubOptions;
use unravel::models::load;
use unravel::models::tokenizer::TextTokenizer;
use unravel::models::{Model, ModelOptions};

#[derive(Args)]
pub struct ModelArgs {
    /// Local model folder (config.json, model.safetensors or sharded, tokenizer.json), a config
    /// .json file (with --random-weights), or a Hugging Face hub repo id such as `gpt2`.
    #[arg(long, value_name = "DIR_OR_REPO")]
    pub model: String,
    /// Hub branch, tag or commit.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Hub cache folder (default: $HF_HOME/hub or ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use the hub cache only, no network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Build the model from config.json alone with random weights (benchmarks, no weights at hand).
    #[arg(long)]
    pub random_weights: bool,
    /// Seed for --random-weights.
    #[arg(long, default_value_t = 0, value_parser = crate::cli::values::whole::<u64>, allow_negative_numbers = true)]
    pub seed: u64,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Compute dtype: f32, f16 or bf16 (outputs are always written as f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl ModelArgs {
    pub fn load(&self) -> Result<(Model, load::ModelFiles)> {
        let device = parse_device(&self.device)?;
        let dtype = parse_dtype(&self.dtype)?;
        let mut hub = HubOptions {
            revision: self.revision.clone(),
            cache_dir: self.cache_dir.clone(),
            ..HubOptions::default()
        };
        hub.offline |= self.offline;
        let files = load::resolve(&self.model, &hub, !self.random_weights)?;
        let opts = ModelOptions {
            device,
            dtype,
            random_seed: self.random_weights.then_some(self.seed),
        };
        let model = Model::load(&files, &opts)?;
        Ok((model, files))
    }

    pub fn tokenizer(&self, files: &load::ModelFiles) -> Result<TextTokenizer> {
        Ok(TextTokenizer::from_file(&self.tokenizer_path(files)?)?)
    }

    pub fn tokenizer_path(&self, files: &load::ModelFiles) -> Result<PathBuf> {
        let path = match (&self.tokenizer, &files.tokenizer) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => bail!(
                "model `{}` has no tokenizer.json; pass --tokenizer FILE",
                self.model
            ),
        };
        if !path.is_file() {
            bail!("--tokenizer {}: file does not exist", path.display());
        }
        Ok(path)
    }
}
