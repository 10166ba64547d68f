//! What a toy run leaves behind: OUT/results.json (every number), the experiment's SVG plots
//! and a short text summary for stdout. Every file is written atomically.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::experiments::{Comparison, FeatureRow, HiddenRow, PhaseClass, Summary, ToyResults};
use super::plots;
use crate::plot::write_svg;

/// Writes results.json and the plots into `dir`; returns the paths written.
pub fn write_outputs(r: &ToyResults, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Outputs {
        dir,
        files: Vec::new(),
    };
    let json = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    out.put("results.json", json)?;
    if r.settings.hidden == [2] {
        out.feature_arrows(r)?;
    }
    if r.experiment != super::Experiment::Phase {
        out.geometry(r)?;
    }
    out.summary_plot(r)?;
    out.loss(r)?;
    Ok(out.files)
}

/// The folder being written and the paths written so far; each method writes one or more plots.
struct Outputs<'a> {
    dir: &'a Path,
    files: Vec<PathBuf>,
}

fn label(r: &ToyResults, k: usize) -> String {
    r.configs[k].config.label.clone()
}

impl Outputs<'_> {
    /// Writes one file; an SVG also as PNG beside it.
    fn put(&mut self, name: &str, text: String) -> std::io::Result<()> {
        let path = self.dir.join(name);
        if name.ends_with(".svg") {
            write_svg(&path, &text)?;
        } else {
            crate::io::write_atomic(&path, text.as_bytes())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        self.files.push(path);
        Ok(())
    }

    /// Feature embeddings (two hidden dimensions only).
    fn feature_arrows(&mut self, r: &ToyResults) -> std::io::Result<()> {
        let exp = r.experiment.name();
        let panels: Vec<_> = (0..r.configs.len())
            .map(|k| (label(r, k), r.configs[k].best().w.clone()))
            .collect();
        self.put(
            "features.svg",
            plots::feature_arrows(
                &format!("{exp}: feature embeddings W_i (best instance)"),
                &panels,
            ),
        )
    }

    /// Norms, dimensionality and WᵀW of each configuration's best instance.
    fn geometry(&mut self, r: &ToyResults) -> std::io::Result<()> {
        let exp = r.experiment.name();
        let all = 0..r.configs.len();
        let norms: Vec<_> = all
            .clone()
            .map(|k| (label(r, k), r.configs[k].best().geometry.norms.clone()))
            .collect();
        self.put(
            "norms.svg",
            plots::bars(
                &format!("{exp}: feature norms ‖W_i‖"),
                "‖W_i‖",
                &norms,
                &[1.0],
            ),
        )?;
        let dims: Vec<_> = all
            .clone()
            .map(|k| {
                (
                    label(r, k),
                    r.configs[k].best().geometry.dimensionality.clone(),
                )
            })
            .collect();
        self.put(
            "dimensionality.svg",
            plots::bars(
                &format!("{exp}: feature dimensionality D_i"),
                "D_i",
                &dims,
                &[1.0, 0.5, 0.4],
            ),
        )?;
        let wtw: Vec<_> = all
            .map(|k| (label(r, k), r.configs[k].best().geometry.wtw.clone()))
            .collect();
        self.put(
            "wtw.svg",
            plots::heatmaps(&format!("{exp}: WᵀW (best instance)"), &wtw),
        )
    }

    /// The plot of the experiment's own summary, where it has one.
    fn summary_plot(&mut self, r: &ToyResults) -> std::io::Result<()> {
        match &r.summary {
            Summary::Wtw(rows) => {
                let cats: Vec<_> = rows
                    .iter()
                    .zip(&r.configs)
                    .map(|(row, c)| {
                        (
                            format!("p={}", row.density),
                            c.best().geometry.dimensionality.clone(),
                            row.dims_per_feature,
                        )
                    })
                    .collect();
                self.put(
                    "dimensionality-scatter.svg",
                    plots::dimensionality("wtw: feature dimensionality by density", &cats),
                )
            }
            Summary::HiddenSizes(rows) => {
                let pts: Vec<_> = rows
                    .iter()
                    .map(|row| (row.hidden as f64, row.mean_interference))
                    .collect();
                self.put(
                    "interference.svg",
                    plots::lines(
                        "hidden-sizes: mean interference Σ_{j≠i}(Ŵ_i·W_j)² vs hidden size",
                        "hidden size d",
                        "mean interference",
                        &[("best instance".into(), pts)],
                    ),
                )
            }
            Summary::Phase(p) => self.put(
                "phase.svg",
                plots::phase(
                    "phase: feature 2 of n=2 in d=1",
                    &p.densities,
                    &p.relative_importances,
                    &p.classes,
                    &p.norms,
                ),
            ),
            _ => Ok(()),
        }
    }

    fn loss(&mut self, r: &ToyResults) -> std::io::Result<()> {
        let exp = r.experiment.name();
        let curve: Vec<_> = r.curve.iter().map(|&(s, l)| (s as f64, l)).collect();
        self.put(
            "loss.svg",
            plots::lines(
                &format!("{exp}: training loss"),
                "step",
                "mean loss over instances",
                &[("loss".into(), curve)],
            ),
        )
    }
}

fn list(v: &[f64], prec: usize) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.prec$}")).collect();
    format!("[{}]", parts.join(", "))
}

fn feature_rows(out: &mut String, rows: &[FeatureRow]) {
    for row in rows {
        let _ = writeln!(out, "{}  (loss {:.5})", row.label, row.loss);
        let _ = writeln!(out, "  norms ‖W_i‖   {}", list(&row.norms, 3));
        let _ = writeln!(out, "  D_i           {}", list(&row.dimensionality, 3));
        if let Some(g) = &row.angle_gaps {
            let _ = writeln!(out, "  angle gaps °  {} (represented features)", list(g, 1));
        }
        let _ = writeln!(out, "  mean b        {:.3}", row.mean_b);
        if row.importance_norm_spearman.is_finite() {
            let _ = writeln!(
                out,
                "  Spearman(importance, norm) = {:.3}",
                row.importance_norm_spearman
            );
        }
    }
}

fn comparison(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "{}: learned loss {:.5} (Monte Carlo {:.5}, {} samples) vs two orthogonal features {:.5} \
         exact ({:.5} MC) -> {}",
        c.label,
        c.learned_loss,
        c.learned_loss_mc,
        c.samples,
        c.orthogonal_loss,
        c.orthogonal_loss_mc,
        if c.learned_is_better {
            "the optimiser found a better solution"
        } else {
            "the orthogonal solution is at least as good"
        }
    );
}

fn hidden_rows(out: &mut String, rows: &[HiddenRow]) {
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>13} {:>11} {:>12} {:>8}",
        "configuration", "loss", "interference", "dims/feat", "represented", "mean D"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<28} {:>9.5} {:>13.4} {:>11.3} {:>12} {:>8.3}",
            r.label,
            r.loss,
            r.mean_interference,
            r.dims_per_feature,
            r.represented,
            r.mean_dimensionality
        );
    }
}

/// The human-readable summary printed after a run.
pub fn summary_text(r: &ToyResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} configurations x {} instances, {} steps of batch {} on {} in {:.1}s (best instance per configuration)",
        r.experiment.name(),
        r.configs.len(),
        r.settings.instances,
        r.settings.steps,
        r.settings.batch,
        r.device,
        r.seconds
    );
    match &r.summary {
        Summary::Features(rows) => feature_rows(&mut out, rows),
        Summary::SparseVsDense {
            rows,
            comparison: c,
        } => {
            feature_rows(&mut out, rows);
            if let Some(c) = c {
                comparison(&mut out, c);
            }
        }
        Summary::HiddenSizes(rows) | Summary::Wtw(rows) => hidden_rows(&mut out, rows),
        Summary::Phase(p) => {
            let _ = writeln!(
                out,
                "rows: density; columns: relative importance {}",
                list(&p.relative_importances, 2)
            );
            let _ = writeln!(out, "  . not represented   # dedicated dimension   x superposed   o orthogonal   ? other");
            for (d, row) in p.densities.iter().zip(&p.classes) {
                let cells: String = row
                    .iter()
                    .map(|c| match c {
                        PhaseClass::NotRepresented => " .",
                        PhaseClass::Dedicated => " #",
                        PhaseClass::Superposed => " x",
                        PhaseClass::Orthogonal => " o",
                        PhaseClass::Other => " ?",
                    })
                    .collect();
                let _ = writeln!(out, "  {d:>7.4} {cells}");
            }
        }
    }
    out
}
