//! Plots written atomically as SVG, each with its PNG copy.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// A plot that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed while drawing `path` (the message is plotters' own; the CLI names the
    /// output folder).
    #[error("{message}")]
    Draw { path: PathBuf, message: String },
    /// The finished plot (or its PNG copy) could not be written (the cause names the file).
    #[error("{source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A plotters failure inside a drawing callback, before [`atomic_svg`] names the file.
struct Failed(String);

impl<E: std::fmt::Display> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed(e.to_string())
    }
}

/// Draws in memory, then writes the SVG and its PNG copy ([`crate::plot::write_svg`], each
/// atomically), so a failed draw never leaves a complete-looking file.
fn atomic_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), Failed>,
) -> Result<(), PlotError> {
    let failed = |Failed(message): Failed| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.into()))?;
        draw(&root).map_err(failed)?;
        root.present().map_err(|e| failed(e.into()))?;
    }
    crate::plot::write_svg(path, &svg).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Planted-feature recovery: each planted feature's best cosine with any latent against its
/// frequency (log scale), with the recovery threshold as a line.
pub fn recovery_scatter(
    path: &Path,
    points: &[(f32, f32)],
    threshold: f32,
    title: &str,
) -> Result<(), PlotError> {
    let lf: Vec<(f32, f32)> = points
        .iter()
        .map(|&(f, c)| ((f.max(1e-7)).log10(), c))
        .collect();
    let (lo, hi) = lf
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &(x, _)| (a.min(x), b.max(x)));
    let (lo, hi) = if lo < hi {
        (lo - 0.1, hi + 0.1)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let ymin = lf.iter().map(|p| p.1).fold(1.0f32, f32::min).min(0.0);
    atomic_svg(path, (720, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, ymin..1.02f32)?;
        // A grid line per label, no fine mesh between them.
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .light_line_style(WHITE)
            .x_desc("log10 planted frequency")
            .y_desc("best cosine with any latent")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                [(lo, threshold), (hi, threshold)],
                RED.stroke_width(1),
            ))?
            .label(format!("recovered: cos ≥ {threshold}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart.draw_series(
            lf.iter()
                .map(|&(x, y)| Circle::new((x, y), 3, BLUE.mix(0.6).filled())),
        )?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(Failed::from)
    })
}

/// Eigenvalue (or singular value) spectra, log scale, one line per named series.
pub fn spectrum(
    path: &Path,
    series: &[(String, Vec<f64>)],
    title: &str,
    y_desc: &str,
) -> Result<(), PlotError> {
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(1).max(2);
    let floor = 1e-12f64;
    let vals = series.iter().flat_map(|s| s.1.iter().map(|v| v.max(floor)));
    let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi {
        (lo.log10() - 0.2, hi.log10() + 0.2)
    } else {
        (-1.0, 1.0)
    };
    atomic_svg(path, (760, 460), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(1f64..n as f64, lo..hi)?;
        // Coarse grid; a label at whole powers of ten only (half-decade ticks read "1e0" twice).
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(((hi - lo).ceil() as usize + 1).clamp(2, 12))
            .light_line_style(WHITE)
            .x_desc("index (largest first)")
            .y_desc(y_desc)
            .y_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-6 {
                    format!("1e{}", v.round() as i64)
                } else {
                    String::new()
                }
            })
            .draw()?;
        for (i, (name, v)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    v.iter()
                        .enumerate()
                        .map(|(k, &x)| ((k + 1) as f64, x.max(floor).log10())),
                    color.stroke_width(2),
                ))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(Failed::from)
    })
}

/// A 2D scatter (e.g. PCA projections), coloured by category when `labels` is given (one per
/// point; the 10 most common categories get colours and a legend, the rest are grey).
pub fn scatter(
    path: &Path,
    points: &[[f32; 2]],
    labels: Option<&[String]>,
    title: &str,
    axes: (&str, &str),
) -> Result<(), PlotError> {
    let ext = |k: usize| {
        let (a, b) = points
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[k]), b.max(p[k])));
        if a < b {
            (a - 0.05 * (b - a), b + 0.05 * (b - a))
        } else {
            (a - 1.0, a + 1.0)
        }
    };
    let ((x0, x1), (y0, y1)) = if points.is_empty() {
        ((-1.0, 1.0), (-1.0, 1.0))
    } else {
        (ext(0), ext(1))
    };
    // Categories by frequency.
    let mut top: Vec<(String, usize)> = vec![];
    if let Some(l) = labels {
        let mut counts = std::collections::BTreeMap::new();
        for v in l {
            *counts.entry(v.clone()).or_insert(0usize) += 1;
        }
        top = counts.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(10);
    }
    atomic_svg(path, (620, 520), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .draw()?;
        let Some(l) = labels else {
            chart.draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p[0], p[1]), 2, BLUE.mix(0.4).filled())),
            )?;
            return Ok(());
        };
        let other: Vec<&[f32; 2]> = points
            .iter()
            .zip(l)
            .filter(|(_, v)| !top.iter().any(|(t, _)| t == *v))
            .map(|(p, _)| p)
            .collect();
        chart.draw_series(
            other
                .iter()
                .map(|p| Circle::new((p[0], p[1]), 2, BLACK.mix(0.15).filled())),
        )?;
        for (i, (name, _)) in top.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(
                    points
                        .iter()
                        .zip(l)
                        .filter(|(_, v)| *v == name)
                        .map(|(p, _)| Circle::new((p[0], p[1]), 2, color.mix(0.6).filled())),
                )?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(Failed::from)
    })
}

/// A square matrix in [−1, 1] as a heatmap (blue negative, red positive).
pub fn heatmap(path: &Path, m: &[Vec<f32>], title: &str) -> Result<(), PlotError> {
    let k = m.len().max(1);
    atomic_svg(path, (560, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0..k, 0..k)?;
        chart.configure_mesh().disable_mesh().draw()?;
        chart.draw_series(m.iter().enumerate().flat_map(|(i, row)| {
            row.iter().enumerate().map(move |(j, &v)| {
                let v = v.clamp(-1.0, 1.0) as f64;
                let (r, g, b) = if v >= 0.0 {
                    (255, (255.0 * (1.0 - v)) as u8, (255.0 * (1.0 - v)) as u8)
                } else {
                    ((255.0 * (1.0 + v)) as u8, (255.0 * (1.0 + v)) as u8, 255)
                };
                Rectangle::new([(j, k - 1 - i), (j + 1, k - i)], RGBColor(r, g, b).filled())
            })
        }))?;
        Ok(())
    })
}

/// Named values per layer as lines (e.g. effective rank / d and PR / d against layer), one series
/// per metric × hook kind (`mlp.post`, `resid_post`: drawn solid, dashed, ... by kind, coloured by
/// metric); a series skips the layers it has no value for (`None`).
pub fn per_layer(
    path: &Path,
    layers: &[String],
    series: &[(String, usize, Vec<Option<f64>>)],
    title: &str,
) -> Result<(), PlotError> {
    let n = layers.len().max(2);
    let hi = series
        .iter()
        .flat_map(|s| s.2.iter().flatten().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    atomic_svg(path, (760, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.3f64..(n - 1) as f64 + 0.3, 0f64..hi)?;
        let names = layers.to_vec();
        // One grid line per layer and a few across; no fine mesh between them.
        chart
            .configure_mesh()
            .x_labels(n.min(24))
            .y_labels(6)
            .light_line_style(WHITE)
            .x_label_formatter(&move |x| {
                let i = x.round() as usize;
                if (x - i as f64).abs() < 1e-6 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("layer")
            .draw()?;
        for (name, metric, v) in series {
            let colour = Palette99::pick(*metric).to_rgba();
            let points: Vec<(f64, f64)> = (v.iter().enumerate())
                .filter_map(|(k, y)| y.map(|y| (k as f64, y)))
                .collect();
            let dashed = name.contains("resid");
            let line: Vec<PathElement<(f64, f64)>> = if dashed {
                // Dashes: every other tenth of each segment.
                points
                    .windows(2)
                    .flat_map(|w| {
                        (0..10).step_by(2).map(move |t| {
                            let at = |f: f64| {
                                (
                                    w[0].0 + f * (w[1].0 - w[0].0),
                                    w[0].1 + f * (w[1].1 - w[0].1),
                                )
                            };
                            PathElement::new(
                                vec![at(t as f64 / 10.0), at((t + 1) as f64 / 10.0)],
                                colour.stroke_width(2),
                            )
                        })
                    })
                    .collect()
            } else {
                vec![PathElement::new(points.clone(), colour.stroke_width(2))]
            };
            chart
                .draw_series(line)?
                .label(name.to_string())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + if dashed { 6 } else { 16 }, y)], colour)
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(Failed::from)
    })
}
