//! Plots written atomically as SVG.

use std::path::Path;

use plotters::prelude::*;

/// Renders into `path` via `path.tmp` + rename, so a failed draw never leaves a complete-looking file.
fn atomic_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<(), String> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Planted-feature recovery: each planted feature's best cosine with any latent against its
/// frequency (log scale), with the recovery threshold as a line.
pub fn recovery_scatter(
    path: &Path,
    points: &[(f32, f32)],
    threshold: f32,
    title: &str,
) -> Result<(), String> {
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
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, ymin..1.02f32)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("log10 planted frequency")
            .y_desc("best cosine with any latent")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                [(lo, threshold), (hi, threshold)],
                RED.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("recovered: cos ≥ {threshold}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .draw_series(
                lf.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, BLUE.mix(0.6).filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())
    })
}
