//! Unit sources: what the audit scores. A hook's dimensions (neurons), a chosen subset of them,
//! or an SAE's features, encoded on the fly from the hook rows the SAE reads.

use rayon::prelude::*;

use crate::sae::Sae;
use crate::store::HookInfo;

/// What to audit: the units of one side.
pub enum UnitSource {
    /// The dimensions of a hook.
    Neurons { hook: HookInfo },
    /// Chosen dimensions of a hook (a subset of the neurons, for a second pass).
    Columns { hook: HookInfo, columns: Vec<usize> },
    /// The features of an SAE reading `hook` (weights with any input scaling folded in).
    Features {
        hook: HookInfo,
        sae: Box<Sae>,
        name: String,
    },
}

impl UnitSource {
    pub(super) fn hook(&self) -> &HookInfo {
        match self {
            UnitSource::Neurons { hook }
            | UnitSource::Columns { hook, .. }
            | UnitSource::Features { hook, .. } => hook,
        }
    }

    pub(super) fn units(&self) -> usize {
        match self {
            UnitSource::Neurons { hook } => hook.d,
            UnitSource::Columns { columns, .. } => columns.len(),
            UnitSource::Features { sae, .. } => sae.d_sae,
        }
    }

    /// Unit-major activations `[units, rows]` of the hook rows `x [rows, d]`.
    pub(super) fn activations(&self, x: &[f32]) -> Vec<f32> {
        match self {
            UnitSource::Neurons { hook } => {
                let d = hook.d;
                let rows = x.len() / d;
                let mut out = vec![0f32; d * rows];
                out.par_chunks_mut(rows.max(1))
                    .enumerate()
                    .for_each(|(u, col)| {
                        for (r, v) in col.iter_mut().enumerate() {
                            *v = x[r * d + u];
                        }
                    });
                out
            }
            UnitSource::Columns { hook, columns } => {
                let d = hook.d;
                let rows = x.len() / d;
                let mut out = vec![0f32; columns.len() * rows];
                out.par_chunks_mut(rows.max(1))
                    .zip(columns)
                    .for_each(|(col, &u)| {
                        for (r, v) in col.iter_mut().enumerate() {
                            *v = x[r * d + u];
                        }
                    });
                out
            }
            UnitSource::Features { sae, .. } => sae.encode_feature_major(x),
        }
    }

    /// The same source restricted to `units` (in that order).
    pub(super) fn subset(&self, units: &[usize]) -> UnitSource {
        match self {
            UnitSource::Neurons { hook } => UnitSource::Columns {
                hook: hook.clone(),
                columns: units.to_vec(),
            },
            UnitSource::Columns { hook, columns } => UnitSource::Columns {
                hook: hook.clone(),
                columns: units.iter().map(|&u| columns[u]).collect(),
            },
            UnitSource::Features { hook, sae, name } => {
                let sub = sae.encoder_subset(units);
                UnitSource::Features {
                    hook: hook.clone(),
                    sae: Box::new(sub),
                    name: name.clone(),
                }
            }
        }
    }

    /// One unit's activation on one hook row.
    pub(super) fn activation(&self, unit: usize, x: &[f32]) -> f32 {
        match self {
            UnitSource::Neurons { .. } => x[unit],
            UnitSource::Columns { columns, .. } => x[columns[unit]],
            UnitSource::Features { sae, .. } => sae.feature_activation(unit, x),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            UnitSource::Neurons { .. } | UnitSource::Columns { .. } => "neurons",
            UnitSource::Features { .. } => "features",
        }
    }

    pub(super) fn name(&self) -> String {
        match self {
            UnitSource::Neurons { hook } | UnitSource::Columns { hook, .. } => hook.name.clone(),
            UnitSource::Features { name, .. } => name.clone(),
        }
    }
}
