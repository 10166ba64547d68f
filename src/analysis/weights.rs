//! `unravel analyze --weights` as a library entry point: the singular value spectrum and
//! effective rank of every weight matrix of a model, and `weights.json` as a type.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::superposition::weight_spectrum;

/// The report's file name inside the output folder.
pub const WEIGHTS_FILE: &str = "weights.json";

/// Errors naming the weights file; the caller adds the flag.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {reason}", file.display())]
    Read { file: PathBuf, reason: String },
    #[error("{}: tensor {tensor}: {reason}", file.display())]
    Tensor {
        file: PathBuf,
        tensor: String,
        reason: String,
    },
}

/// One 2-D weight matrix.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixSpectrum {
    pub name: String,
    pub shape: [usize; 2],
    pub effective_rank: usize,
    /// Effective rank / min(shape).
    pub rank_ratio: f64,
    /// Largest first.
    pub singular_values: Vec<f64>,
}

/// `weights.json`.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    pub matrices: Vec<MatrixSpectrum>,
    /// The model's id as resolved.
    pub model: String,
    pub rank_threshold: f64,
}

impl WeightsReport {
    /// The file's text: every object's keys sorted, as the file has always been.
    pub fn to_json(&self) -> String {
        crate::sorted_json::pretty(self)
    }

    /// The matrices by kind (the name without its layer numbers), each spectrum divided by its
    /// largest singular value: what one plot per kind shows.
    pub fn normalised_by_kind(&self) -> BTreeMap<String, Vec<(String, Vec<f64>)>> {
        let mut kinds: BTreeMap<String, Vec<(String, Vec<f64>)>> = Default::default();
        for m in &self.matrices {
            let kind: String = m
                .name
                .split('.')
                .filter(|p| p.parse::<u64>().is_err())
                .collect::<Vec<_>>()
                .join(".");
            let top = m.singular_values.first().copied().unwrap_or(1.0).max(1e-30);
            kinds.entry(kind).or_default().push((
                m.name.clone(),
                m.singular_values.iter().map(|s| s / top).collect(),
            ));
        }
        kinds
    }
}

/// Every 2-D tensor (both sides ≥ 2) of the safetensors `weights` files of the model `model_id`,
/// in natural name order (h.2 before h.10).
pub fn weight_spectra(
    model_id: &str,
    weights: &[PathBuf],
    rank_threshold: f64,
) -> Result<WeightsReport, WeightsError> {
    let mut matrices = vec![];
    for file in weights {
        let tensors =
            candle_core::safetensors::load(file, &candle_core::Device::Cpu).map_err(|e| {
                WeightsError::Read {
                    file: file.clone(),
                    reason: e.to_string(),
                }
            })?;
        for (name, t) in tensors {
            let &[r, c] = t.dims() else { continue };
            if r < 2 || c < 2 {
                continue;
            }
            let w: Vec<f32> = t
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .map_err(|e| WeightsError::Tensor {
                    file: file.clone(),
                    tensor: name.clone(),
                    reason: e.to_string(),
                })?;
            let (singular_values, effective_rank) = weight_spectrum(&w, r, c, rank_threshold);
            matrices.push(MatrixSpectrum {
                rank_ratio: effective_rank as f64 / r.min(c) as f64,
                name,
                shape: [r, c],
                effective_rank,
                singular_values,
            });
        }
    }
    let key = |n: &str| -> Vec<(String, u64)> {
        n.split('.')
            .map(|p| {
                p.parse::<u64>()
                    .map_or((p.to_string(), 0), |v| (String::new(), v))
            })
            .collect()
    };
    matrices.sort_by_key(|m| key(&m.name));
    Ok(WeightsReport {
        matrices,
        model: model_id.to_string(),
        rank_threshold,
    })
}
