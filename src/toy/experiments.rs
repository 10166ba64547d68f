//! Runs an experiment (one batched training of all its configurations) and summarises what the
//! paper reports for it, from each configuration's best (lowest-loss) instance.

use candle_core::Device;
use serde::Serialize;

use super::error::ToyError;
use super::metrics::{
    angle_gaps, geometry, monte_carlo_loss, orthogonal_solution, orthogonal_solution_loss,
    spearman, Geometry, Weights,
};
use super::settings::{Experiment, ToyConfig, ToySettings};
use super::train::{train, Trained};

/// A feature with ‖W_i‖ at least this counts as represented (phase diagram, counts).
pub const REPRESENTED_NORM: f64 = 0.5;
/// Two represented features with cos below −this are superposed (antipodal); |cos| below it,
/// orthogonal.
pub const OPPOSED_COS: f64 = 0.3;
/// Samples for the Monte Carlo losses of the sparse-vs-dense comparison.
pub const COMPARISON_SAMPLES: usize = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct InstanceResult {
    pub replica: usize,
    pub initial_loss: f64,
    pub loss: f64,
    /// W [d][n]: row r = hidden dimension r; column i = feature i.
    pub w: Vec<Vec<f32>>,
    pub b: Vec<f32>,
    #[serde(flatten)]
    pub geometry: Geometry,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigResult {
    #[serde(flatten)]
    pub config: ToyConfig,
    /// Index into `instances` of the lowest-loss one.
    pub best: usize,
    pub instances: Vec<InstanceResult>,
}

impl ConfigResult {
    pub fn best(&self) -> &InstanceResult {
        &self.instances[self.best]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ToyResults {
    pub experiment: Experiment,
    pub settings: ToySettings,
    pub device: String,
    pub seconds: f64,
    /// (step, mean training loss over instances).
    pub curve: Vec<(usize, f64)>,
    pub summary: Summary,
    pub configs: Vec<ConfigResult>,
}

/// What each experiment is about, from the best instance of each configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Summary {
    /// Pentagon and importance: one row per configuration.
    Features(Vec<FeatureRow>),
    SparseVsDense {
        rows: Vec<FeatureRow>,
        comparison: Option<Comparison>,
    },
    HiddenSizes(Vec<HiddenRow>),
    Wtw(Vec<HiddenRow>),
    Phase(PhaseDiagram),
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureRow {
    pub label: String,
    pub loss: f64,
    pub norms: Vec<f64>,
    pub dimensionality: Vec<f64>,
    pub mean_b: f64,
    /// 2D only: sorted angles' consecutive gaps (degrees), represented features only.
    pub angle_gaps: Option<Vec<f64>>,
    /// Spearman correlation of importance and norm (NaN with equal importance).
    pub importance_norm_spearman: f64,
}

/// The dense equal-importance model against the two-orthogonal-features solution.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub label: String,
    /// The best instance's loss on the evaluation batches and by Monte Carlo (the same draws
    /// as `orthogonal_loss_mc`, so their difference is not sampling noise).
    pub learned_loss: f64,
    pub learned_loss_mc: f64,
    /// Exact expected loss of two features on orthonormal axes, the rest at b = p/2.
    pub orthogonal_loss: f64,
    pub orthogonal_loss_mc: f64,
    pub samples: usize,
    pub learned_is_better: bool,
}

/// One hidden size (hidden-sizes) or one density (wtw).
#[derive(Debug, Clone, Serialize)]
pub struct HiddenRow {
    pub label: String,
    pub hidden: usize,
    pub density: f64,
    pub loss: f64,
    pub mean_interference: f64,
    pub dims_per_feature: f64,
    /// Features with ‖W_i‖ ≥ REPRESENTED_NORM.
    pub represented: usize,
    /// Mean D_i over represented features.
    pub mean_dimensionality: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseClass {
    /// Feature 2's norm < REPRESENTED_NORM.
    NotRepresented,
    /// Feature 2 represented, feature 1 not: feature 2 has the dimension to itself.
    Dedicated,
    /// Both represented with cos < −OPPOSED_COS (antipodal in 1D).
    Superposed,
    /// Both represented and |cos| < OPPOSED_COS (only possible with d ≥ 2).
    Orthogonal,
    Other,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseDiagram {
    pub densities: Vec<f64>,
    pub relative_importances: Vec<f64>,
    /// [density][relative importance]
    pub classes: Vec<Vec<PhaseClass>>,
    /// [density][relative importance] = (‖W_1‖, ‖W_2‖) of the best instance.
    pub norms: Vec<Vec<(f64, f64)>>,
}

/// Trains `settings` on `device` and summarises it; `on_step(done, loss)` as in [`train`].
pub fn run_experiment(
    settings: &ToySettings,
    device: &Device,
    on_step: &mut dyn FnMut(usize, Option<f64>),
) -> Result<ToyResults, ToyError> {
    settings.validate()?;
    let configs = settings.configs();
    let trained = train(settings, &configs, device, on_step)?;
    Ok(summarise(settings, configs, trained, device))
}

/// Groups instances by configuration, computes every metric and the experiment's summary.
pub fn summarise(
    settings: &ToySettings,
    configs: Vec<ToyConfig>,
    trained: Trained,
    device: &Device,
) -> ToyResults {
    let n = trained.n;
    let mut results: Vec<ConfigResult> = configs
        .into_iter()
        .map(|config| ConfigResult {
            config,
            best: 0,
            instances: Vec::new(),
        })
        .collect();
    for t in &trained.instances {
        results[t.config].instances.push(InstanceResult {
            replica: t.replica,
            initial_loss: t.initial_loss,
            loss: t.loss,
            w: t.w.chunks(n).map(|r| r.to_vec()).collect(),
            b: t.b.clone(),
            geometry: geometry(&t.w, t.hidden, n),
        });
    }
    for c in &mut results {
        c.best = (0..c.instances.len())
            .min_by(|&a, &b| c.instances[a].loss.total_cmp(&c.instances[b].loss))
            .unwrap_or(0);
    }
    let summary = match settings.experiment {
        Experiment::Pentagon | Experiment::Importance => {
            Summary::Features(results.iter().map(feature_row).collect())
        }
        Experiment::SparseVsDense => Summary::SparseVsDense {
            rows: results.iter().map(feature_row).collect(),
            comparison: comparison(settings, &results),
        },
        Experiment::HiddenSizes => Summary::HiddenSizes(results.iter().map(hidden_row).collect()),
        Experiment::Wtw => Summary::Wtw(results.iter().map(hidden_row).collect()),
        Experiment::Phase => Summary::Phase(phase_diagram(settings, &results)),
    };
    ToyResults {
        experiment: settings.experiment,
        settings: settings.clone(),
        device: crate::device::device_name(device),
        seconds: trained.seconds,
        curve: trained.curve,
        summary,
        configs: results,
    }
}

fn feature_row(c: &ConfigResult) -> FeatureRow {
    let best = c.best();
    let g = &best.geometry;
    let gaps = g.angles.as_ref().map(|a| {
        let kept: Vec<f64> = a
            .iter()
            .zip(&g.norms)
            .filter(|(_, &nm)| nm >= REPRESENTED_NORM)
            .map(|(a, _)| *a)
            .collect();
        angle_gaps(&kept)
    });
    FeatureRow {
        label: c.config.label.clone(),
        loss: best.loss,
        norms: g.norms.clone(),
        dimensionality: g.dimensionality.clone(),
        mean_b: best.b.iter().map(|&v| v as f64).sum::<f64>() / best.b.len() as f64,
        angle_gaps: gaps,
        importance_norm_spearman: spearman(&c.config.importance, &g.norms),
    }
}

fn hidden_row(c: &ConfigResult) -> HiddenRow {
    let g = &c.best().geometry;
    let n = g.norms.len();
    let kept: Vec<usize> = (0..n).filter(|&i| g.norms[i] >= REPRESENTED_NORM).collect();
    HiddenRow {
        label: c.config.label.clone(),
        hidden: c.config.hidden,
        density: c.config.density,
        loss: c.best().loss,
        mean_interference: g.interference.iter().sum::<f64>() / n as f64,
        dims_per_feature: g.dims_per_feature,
        represented: kept.len(),
        mean_dimensionality: if kept.is_empty() {
            0.0
        } else {
            kept.iter().map(|&i| g.dimensionality[i]).sum::<f64>() / kept.len() as f64
        },
    }
}

/// The dense equal-importance configuration (if any) against the orthogonal solution that keeps
/// its first two features.
fn comparison(settings: &ToySettings, results: &[ConfigResult]) -> Option<Comparison> {
    let c = results
        .iter()
        .rev()
        .find(|c| c.config.importance.iter().all(|&v| v == 1.0) && c.config.density >= 0.5)?;
    let (n, d, p) = (settings.features, c.config.hidden, c.config.density);
    let kept: Vec<usize> = (0..d.min(n)).collect();
    let best = c.best();
    let flat: Vec<f32> = best.w.concat();
    let imp = &c.config.importance;
    let learned = Weights {
        w: &flat,
        b: &best.b,
        d,
        linear: settings.linear,
    };
    let learned_mc = monte_carlo_loss(learned, p, imp, COMPARISON_SAMPLES, settings.seed);
    let (ow, ob) = orthogonal_solution(n, d, p, &kept);
    let ortho = Weights {
        w: &ow,
        b: &ob,
        d,
        linear: false,
    };
    let ortho_mc = monte_carlo_loss(ortho, p, imp, COMPARISON_SAMPLES, settings.seed);
    let ortho = orthogonal_solution_loss(p, imp, &kept);
    Some(Comparison {
        label: c.config.label.clone(),
        learned_loss: best.loss,
        learned_loss_mc: learned_mc,
        orthogonal_loss: ortho,
        orthogonal_loss_mc: ortho_mc,
        samples: COMPARISON_SAMPLES,
        learned_is_better: learned_mc < ortho_mc,
    })
}

/// Classifies feature 2 (index 1) of a best instance.
pub fn classify(g: &Geometry) -> PhaseClass {
    let (n1, n2) = (g.norms[0], g.norms[1]);
    if n2 < REPRESENTED_NORM {
        return PhaseClass::NotRepresented;
    }
    if n1 < REPRESENTED_NORM {
        return PhaseClass::Dedicated;
    }
    let cos = g.wtw[0][1] / (n1 * n2);
    if cos < -OPPOSED_COS {
        PhaseClass::Superposed
    } else if cos.abs() < OPPOSED_COS {
        PhaseClass::Orthogonal
    } else {
        PhaseClass::Other
    }
}

fn phase_diagram(settings: &ToySettings, results: &[ConfigResult]) -> PhaseDiagram {
    // configs() lists densities outer, relative importances inner.
    let cols = settings.relative_importances.len();
    let rows: Vec<&[ConfigResult]> = results.chunks(cols).collect();
    PhaseDiagram {
        densities: settings.densities.clone(),
        relative_importances: settings.relative_importances.clone(),
        classes: rows
            .iter()
            .map(|r| r.iter().map(|c| classify(&c.best().geometry)).collect())
            .collect(),
        norms: rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| {
                        let g = &c.best().geometry;
                        (g.norms[0], g.norms[1])
                    })
                    .collect()
            })
            .collect(),
    }
}
