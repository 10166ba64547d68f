//! The end of a finished run: the SAELens export (input scaling folded in) and its check file.

use std::path::Path;

use super::setup::input_rows;
use super::source::Input;
use crate::sae::checkpoint::{self, ExportMeta, RunInfo};
use crate::sae::config::TrainConfig;
use crate::sae::metrics::FeatureTracker;
use crate::sae::step::Engine;
use crate::sae::Result;

/// Writes the SAELens export and its check file into the run folder.
pub(super) fn export(
    engine: &mut dyn Engine,
    input: &Input,
    cfg: &TrainConfig,
    info: &RunInfo,
    features: &FeatureTracker,
    eval_set: &[usize],
    dir: &Path,
) -> Result<()> {
    let (sae, _) = engine.snapshot()?;
    let raw = sae.fold_scaling(info.scaling_factor);
    let meta = ExportMeta {
        model_name: info.model_name.clone(),
        hook_name: cfg.hook.clone(),
        context_size: info.context_size,
        prepend_bos: info.prepend_bos,
        dataset_path: cfg.acts.display().to_string(),
    };
    checkpoint::export_saelens(dir, &raw, &features.densities(), &meta)?;
    // A few held-out inputs, encoded in training space (the path training used) and mapped back.
    let x = input_rows(input, cfg, eval_set, 64, true)?;
    let s = info.scaling_factor;
    let xs: Vec<f32> = x.iter().map(|v| v * s).collect();
    let f = sae.encode(&xs);
    let x_hat: Vec<f32> = sae.decode(&f).into_iter().map(|v| v / s).collect();
    checkpoint::write_export_check(dir, &x, &f, &x_hat, sae.d_in, sae.d_sae)
}
