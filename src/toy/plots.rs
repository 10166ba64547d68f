//! The toy experiments' plots as hand-written SVG strings (small, dependency-free, exact control
//! over arrows and heatmap cells): feature arrows in 2D, WᵀW heatmaps, grouped bars (norms, D_i),
//! a dimensionality scatter, a line plot and the phase-diagram grid. Elements, escaping and
//! colours come from the shared toolkit, [`crate::plot`].

use super::experiments::PhaseClass;
use crate::plot::colour::{diverging, TAB10};
use crate::plot::Svg;

/// Panel width/height and spacing, in pixels.
const PANEL: f64 = 240.0;
const GAP: f64 = 30.0;
const TOP: f64 = 40.0;

/// Panels side by side, wrapping after `per_row`: the top-left corner of panel k.
fn grid(count: usize, per_row: usize) -> (f64, f64, impl Fn(usize) -> (f64, f64)) {
    let cols = count.clamp(1, per_row);
    let rows = count.div_ceil(per_row).max(1);
    let w = GAP + cols as f64 * (PANEL + GAP);
    let h = TOP + rows as f64 * (PANEL + GAP + 20.0);
    (w, h, move |k: usize| {
        (
            GAP + (k % per_row) as f64 * (PANEL + GAP),
            TOP + 20.0 + (k / per_row) as f64 * (PANEL + GAP + 20.0),
        )
    })
}

/// Each feature's column of W [2][n] as an arrow from the origin, one panel per configuration,
/// with the unit circle for scale.
pub fn feature_arrows(title: &str, panels: &[(String, Vec<Vec<f32>>)]) -> String {
    let (w, h, at) = grid(panels.len(), 4);
    let mut s = Svg::new(w, h, title);
    for (k, (label, wm)) in panels.iter().enumerate() {
        let (x0, y0) = at(k);
        s.text(x0 + PANEL / 2.0, y0 - 6.0, 12.0, "middle", label);
        s.rect(x0, y0, PANEL, PANEL, "#fafafa", label);
        let reach = wm
            .iter()
            .flatten()
            .fold(1.0f64, |m, v| m.max(v.abs() as f64))
            * 1.15;
        let c = (x0 + PANEL / 2.0, y0 + PANEL / 2.0);
        let scale = PANEL / 2.0 / reach;
        s.circle(c.0, c.1, scale, "none", "#cccccc");
        s.line((x0, c.1), (x0 + PANEL, c.1), "#dddddd", 1.0);
        s.line((c.0, y0), (c.0, y0 + PANEL), "#dddddd", 1.0);
        let n = wm.first().map_or(0, |r| r.len());
        for i in 0..n {
            let (dx, dy) = (wm[0][i] as f64, wm.get(1).map_or(0.0, |r| r[i] as f64));
            let tip = (c.0 + dx * scale, c.1 - dy * scale);
            let colour = TAB10[i % TAB10.len()];
            s.line(c, tip, colour, 2.5);
            s.circle(tip.0, tip.1, 3.5, colour, colour);
            s.text(tip.0 + 5.0, tip.1 - 5.0, 10.0, "start", &format!("{i}"));
        }
    }
    s.finish()
}

/// Square matrices as heatmaps (shared colour scale ±max|v|), one panel each.
pub fn heatmaps(title: &str, panels: &[(String, Vec<Vec<f64>>)]) -> String {
    let (w, h, at) = grid(panels.len(), 3);
    let mut s = Svg::new(w, h + 10.0, title);
    let max = panels
        .iter()
        .flat_map(|(_, m)| m.iter().flatten())
        .fold(1e-12f64, |m, v| m.max(v.abs()));
    for (k, (label, m)) in panels.iter().enumerate() {
        let (x0, y0) = at(k);
        s.text(x0 + PANEL / 2.0, y0 - 6.0, 12.0, "middle", label);
        let cell = PANEL / m.len().max(1) as f64;
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let tip = format!("[{i},{j}] = {v:.3}");
                s.rect(
                    x0 + j as f64 * cell,
                    y0 + i as f64 * cell,
                    cell + 0.05,
                    cell + 0.05,
                    &diverging(v / max),
                    &tip,
                );
            }
        }
    }
    let note = format!("colour scale: blue −{max:.2} … white 0 … red +{max:.2}");
    s.text(w / 2.0, h, 11.0, "middle", &note);
    s.finish()
}

/// One panel per group: bars of `values` (e.g. feature norms or D_i), y from 0 to the max
/// across groups, with optional dashed reference levels.
pub fn bars(title: &str, y_label: &str, groups: &[(String, Vec<f64>)], refs: &[f64]) -> String {
    let (w, h, at) = grid(groups.len(), 4);
    let mut s = Svg::new(w, h, title);
    let top = groups
        .iter()
        .flat_map(|(_, v)| v.iter())
        .chain(refs)
        .fold(1e-12f64, |m, v| m.max(*v))
        * 1.1;
    for (k, (label, vals)) in groups.iter().enumerate() {
        let (x0, y0) = at(k);
        s.text(x0 + PANEL / 2.0, y0 - 6.0, 12.0, "middle", label);
        s.line((x0, y0 + PANEL), (x0 + PANEL, y0 + PANEL), "black", 1.0);
        s.line((x0, y0), (x0, y0 + PANEL), "black", 1.0);
        s.text(x0 - 4.0, y0 + 10.0, 10.0, "end", &format!("{top:.2}"));
        s.text(x0 - 4.0, y0 + PANEL, 10.0, "end", "0");
        let y = |v: f64| y0 + PANEL - v / top * PANEL;
        for &r in refs {
            s.dashed_hline(x0, x0 + PANEL, y(r), "#999");
        }
        let bw = PANEL / vals.len().max(1) as f64;
        for (i, &v) in vals.iter().enumerate() {
            let v = v.max(0.0);
            let tip = format!("feature {i}: {y_label} {v:.3}");
            s.rect(
                x0 + i as f64 * bw + bw * 0.1,
                y(v),
                bw * 0.8,
                v / top * PANEL,
                TAB10[i % TAB10.len()],
                &tip,
            );
        }
    }
    s.text(12.0, h / 2.0, 11.0, "start", y_label);
    s.finish()
}

/// Feature dimensionality: D_i of every feature (dots) per category, the category's
/// dimensions-per-feature as a black bar, and dashed lines at 1, 1/2, 2/5, 1/3.
pub fn dimensionality(title: &str, cats: &[(String, Vec<f64>, f64)]) -> String {
    let (w, h) = (GAP * 3.0 + 100.0 * cats.len() as f64, 380.0);
    let mut s = Svg::new(w, h, title);
    let (x0, y0, ph) = (GAP * 2.0, TOP + 10.0, 280.0);
    let y = |v: f64| y0 + ph - v.clamp(0.0, 1.1) / 1.1 * ph;
    for (v, name) in [(1.0, "1"), (0.5, "1/2"), (0.4, "2/5"), (1.0 / 3.0, "1/3")] {
        s.dashed_hline(x0, w - GAP, y(v), "#bbb");
        s.text(x0 - 4.0, y(v) + 4.0, 10.0, "end", name);
    }
    s.line((x0, y0 + ph), (w - GAP, y0 + ph), "black", 1.0);
    for (k, (label, dims, dpf)) in cats.iter().enumerate() {
        let cx = x0 + 50.0 + 100.0 * k as f64;
        s.text(cx, y0 + ph + 18.0, 11.0, "middle", label);
        s.line((cx - 25.0, y(*dpf)), (cx + 25.0, y(*dpf)), "black", 2.5);
        for (i, &dv) in dims.iter().enumerate() {
            let jitter = ((i * 37) % 29) as f64 - 14.0;
            s.circle(cx + jitter, y(dv), 2.5, "rgba(31,119,180,0.6)", "none");
        }
    }
    s.text(
        w / 2.0,
        h - 10.0,
        11.0,
        "middle",
        "dots: D_i of each feature; black bar: dimensions per feature d/‖W‖²",
    );
    s.finish()
}

/// A line plot of (x, y) series on linear axes.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let (w, h) = (560.0, 380.0);
    let mut s = Svg::new(w, h, title);
    let (x0, y0, pw, ph) = (70.0, TOP + 10.0, w - 110.0, h - TOP - 70.0);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (xmin, xmax) = pts
        .clone()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = pts.fold(1e-12f64, |m, p| m.max(p.1)) * 1.1;
    let span = (xmax - xmin).max(1e-12);
    let px = |x: f64| x0 + (x - xmin) / span * pw;
    let py = |v: f64| y0 + ph - v.max(0.0) / ymax * ph;
    s.line((x0, y0 + ph), (x0 + pw, y0 + ph), "black", 1.0);
    s.line((x0, y0), (x0, y0 + ph), "black", 1.0);
    s.text(x0 - 6.0, y0 + 10.0, 10.0, "end", &format!("{ymax:.3}"));
    s.text(x0 - 6.0, y0 + ph, 10.0, "end", "0");
    s.text(x0 + pw / 2.0, h - 14.0, 12.0, "middle", x_label);
    s.text(14.0, y0 - 8.0, 12.0, "start", y_label);
    for (k, (name, p)) in series.iter().enumerate() {
        let colour = TAB10[k % TAB10.len()];
        for pair in p.windows(2) {
            s.line(
                (px(pair[0].0), py(pair[0].1)),
                (px(pair[1].0), py(pair[1].1)),
                colour,
                2.0,
            );
        }
        for &(x, v) in p {
            s.circle(px(x), py(v), 3.5, colour, colour);
            s.text(px(x), y0 + ph + 16.0, 10.0, "middle", &format!("{x}"));
        }
        s.text(x0 + pw - 4.0, y0 + 14.0 * (k + 1) as f64, 11.0, "end", name);
    }
    s.finish()
}

fn class_colour(c: PhaseClass) -> (&'static str, &'static str) {
    match c {
        PhaseClass::NotRepresented => ("#4c78a8", "not represented"),
        PhaseClass::Dedicated => ("#e45756", "dedicated dimension"),
        PhaseClass::Superposed => ("#b279a2", "superposed"),
        PhaseClass::Orthogonal => ("#54a24b", "orthogonal"),
        PhaseClass::Other => ("#bab0ac", "other"),
    }
}

/// The phase diagram: rows = densities (dense at the top), columns = relative importance of
/// feature 2; each cell coloured by the class of feature 2, with ‖W_1‖, ‖W_2‖ on hover.
pub fn phase(
    title: &str,
    densities: &[f64],
    ratios: &[f64],
    classes: &[Vec<PhaseClass>],
    norms: &[Vec<(f64, f64)>],
) -> String {
    let cell = 36.0;
    let (x0, y0) = (90.0, TOP + 20.0);
    let (w, h) = (
        x0 + cell * ratios.len() as f64 + 190.0,
        y0 + cell * densities.len() as f64 + 70.0,
    );
    let mut s = Svg::new(w, h, title);
    for (r, row) in classes.iter().enumerate() {
        for (c, &cls) in row.iter().enumerate() {
            let (colour, name) = class_colour(cls);
            let (n1, n2) = norms[r][c];
            let tip = format!(
                "density {:.4}, importance ratio {:.3}: {name} (‖W1‖ {n1:.2}, ‖W2‖ {n2:.2})",
                densities[r], ratios[c]
            );
            s.rect(
                x0 + c as f64 * cell,
                y0 + r as f64 * cell,
                cell - 1.0,
                cell - 1.0,
                colour,
                &tip,
            );
        }
        s.text(
            x0 - 6.0,
            y0 + (r as f64 + 0.6) * cell,
            10.0,
            "end",
            &format!("{:.3}", densities[r]),
        );
    }
    for (c, ratio) in ratios.iter().enumerate() {
        s.text(
            x0 + (c as f64 + 0.5) * cell,
            y0 + cell * densities.len() as f64 + 14.0,
            9.0,
            "middle",
            &format!("{ratio:.2}"),
        );
    }
    let bottom = y0 + cell * densities.len() as f64;
    s.text(
        x0 + cell * ratios.len() as f64 / 2.0,
        bottom + 36.0,
        12.0,
        "middle",
        "relative importance of feature 2",
    );
    s.text(8.0, y0 - 8.0, 12.0, "start", "density");
    let lx = x0 + cell * ratios.len() as f64 + 20.0;
    for (k, cls) in [
        PhaseClass::NotRepresented,
        PhaseClass::Dedicated,
        PhaseClass::Superposed,
        PhaseClass::Orthogonal,
        PhaseClass::Other,
    ]
    .into_iter()
    .enumerate()
    {
        let (colour, name) = class_colour(cls);
        let y = y0 + 22.0 * k as f64;
        s.rect(lx, y, 14.0, 14.0, colour, name);
        s.text(lx + 20.0, y + 11.0, 11.0, "start", name);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svgs_are_well_formed_enough() {
        let w = vec![vec![1.0f32, 0.0, -1.0], vec![0.0, 1.0, 0.0]];
        for svg in [
            feature_arrows("a<b", &[("x".into(), w)]),
            heatmaps("h", &[("m".into(), vec![vec![1.0, -0.5], vec![-0.5, 1.0]])]),
            bars("b", "norm", &[("g".into(), vec![1.0, 0.5])], &[1.0]),
            dimensionality("d", &[("p".into(), vec![0.4, 1.0], 0.5)]),
            lines("l", "d", "y", &[("s".into(), vec![(1.0, 0.2), (2.0, 0.1)])]),
            phase(
                "p",
                &[1.0],
                &[0.1, 10.0],
                &[vec![PhaseClass::NotRepresented, PhaseClass::Dedicated]],
                &[vec![(1.0, 0.0), (0.0, 1.0)]],
            ),
        ] {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("a<b") && !svg.contains("NaN"));
        }
    }
}
