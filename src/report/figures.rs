//! The audit report's figures, as standalone SVG documents (each carries its own xmlns and
//! fonts): the class rates, the card × concept heatmap, and the two histograms per side. Inlined
//! in the page by [`super::html`] and written as files by [`super::html::write_audit_svgs`].

use std::fmt::Write as _;

use crate::analysis::report::{AuditReport, SideReport};
use crate::plot::colour::{heat_colour, side_colour};
use crate::plot::svg::{svg_open, title_text, y_axis};
use crate::plot::{count_step, esc, pct, sig3};

/// The unit classes, in the order tables and charts show them.
pub(super) const CLASSES: [&str; 4] = ["polysemantic", "monosemantic", "unexplained", "dead"];

/// Bins of the log10(density) histogram: 30 bins over [−10, 0] (three per decade).
const DENSITY_BINS: usize = 30;
const DENSITY_LO: f64 = -10.0;
const DENSITY_HI: f64 = 0.0;

/// Heatmap cell side, px; labels longer than this many characters are cut (full text in the
/// tooltip).
const CELL: f64 = 16.0;
const LABEL_CHARS: usize = 32;
/// Approximate advance of one character of 11 px sans-serif text, px (for margins only).
const CHAR_W: f64 = 6.4;

/// Grouped bars: one group per class, one bar per side, height = rate.
pub(super) fn rates_svg(r: &AuditReport) -> String {
    let (w, ht) = (560.0, 310.0);
    let (left, right, top, bottom) = (50.0, 16.0, 44.0, 44.0);
    let (pw, ph) = (w - left - right, ht - top - bottom);
    let mut s = svg_open(w, ht);
    title_text(&mut s, w / 2.0, 18.0, "Unit classes by side (rate)");
    y_axis(&mut s, left, top, pw, ph, 0.25, 4, true);
    let n = r.sides.len().max(1) as f64;
    let group = pw / CLASSES.len() as f64;
    let bar = (group * 0.8 / n).min(40.0);
    for (ci, class) in CLASSES.iter().enumerate() {
        let gx = left + ci as f64 * group + (group - bar * n) / 2.0;
        for (si, side) in r.sides.iter().enumerate() {
            let (count, rate) = class_count_rate(side, class);
            let bh = rate.clamp(0.0, 1.0) * ph;
            let x = gx + si as f64 * bar;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\">\
                 <title>{}: {class} {count} units ({})</title></rect>",
                top + ph - bh,
                bar - 2.0,
                side_colour(si),
                esc(&side.kind),
                pct(rate)
            );
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + (bar - 2.0) / 2.0,
                top + ph - bh - 3.0,
                pct(rate)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{class}</text>",
            left + (ci as f64 + 0.5) * group,
            top + ph + 18.0
        );
    }
    // Legend, top right, above the plot (a bar near 100% cannot hide it).
    for (si, side) in r.sides.iter().enumerate() {
        let y = 6.0 + si as f64 * 16.0;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            w - right - 100.0,
            side_colour(si),
            w - right - 84.0,
            y + 10.0,
            esc(&side.kind)
        );
    }
    s.push_str("</svg>");
    s
}

/// Rows = the side's cards, columns = concepts, colour = score; cells at or above the threshold
/// outlined. Column labels rotated so dozens of concepts fit.
pub(super) fn heatmap_svg(r: &AuditReport, side: &SideReport) -> String {
    let labels: Vec<String> = r
        .concepts
        .iter()
        .map(|c| cut(&c.name, LABEL_CHARS))
        .collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
    // Labels at −60°: they rise 0.87× their length and lean right 0.5× their length.
    let (rise, lean) = (longest * CHAR_W * 0.87, longest * CHAR_W * 0.5);
    let row_label = side
        .cards
        .iter()
        .map(|c| c.unit.to_string().len() + 6)
        .max()
        .unwrap_or(6) as f64
        * CHAR_W;
    let (left, top) = (row_label + 40.0, rise + 40.0);
    let ncols = r.concepts.len() as f64;
    let nrows = side.cards.len() as f64;
    let legend_h = 46.0;
    let w = (left + ncols * CELL + lean + 20.0).max(360.0);
    let ht = top + nrows * CELL + legend_h + 10.0;
    let mut s = svg_open(w, ht);
    title_text(
        &mut s,
        10.0,
        18.0,
        &format!("{}: {} score per card × concept", side.kind, r.score),
    );
    s.push_str("<g font-size=\"11\">");
    for (j, label) in labels.iter().enumerate() {
        let x = left + (j as f64 + 0.5) * CELL + 3.0;
        let y = top - 6.0;
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" transform=\"rotate(-60 {x:.1} {y:.1})\">\
             {}<title>{}</title></text>",
            esc(label),
            esc(&r.concepts[j].name)
        );
    }
    for (i, card) in side.cards.iter().enumerate() {
        let y = top + i as f64 * CELL;
        let _ = write!(
            s,
            "<a href=\"#{}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\">\
             unit {}</text>",
            super::browser::unit_anchor(&side.kind, card.unit),
            left - 6.0,
            y + CELL - 4.0,
            class_colour(&card.class),
            card.unit
        );
        for (j, concept) in r.concepts.iter().enumerate() {
            let v = card.concept_scores.get(j).copied().unwrap_or(f64::NAN);
            let x = left + j as f64 * CELL;
            let outline = if v >= r.threshold {
                " stroke=\"#e6550d\" stroke-width=\"2\""
            } else {
                " stroke=\"#ffffff\" stroke-width=\"0.5\""
            };
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{CELL}\" height=\"{CELL}\" \
                 fill=\"{}\"{outline}>\
                 <title>{} unit {} × {}: {}</title></rect>",
                heat_colour(v),
                esc(&side.kind),
                card.unit,
                esc(&concept.name),
                sig3(v)
            );
        }
        s.push_str("</a>");
    }
    s.push_str("</g>");
    heatmap_legend(&mut s, left, top + nrows * CELL + 14.0, r.threshold);
    s.push_str("</svg>");
    s
}

/// The heatmap's legend at (`lx`, `ly`): the colour scale in 20 steps, with the threshold marked.
fn heatmap_legend(s: &mut String, lx: f64, ly: f64, threshold: f64) {
    let lw = 200.0;
    for k in 0..20 {
        let v = (k as f64 + 0.5) / 20.0;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{ly:.1}\" width=\"{:.1}\" height=\"10\" fill=\"{}\"/>",
            lx + k as f64 * lw / 20.0,
            lw / 20.0 + 0.3,
            heat_colour(v)
        );
    }
    let tx = lx + threshold.clamp(0.0, 1.0) * lw;
    let _ = write!(
        s,
        "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"{lw:.1}\" height=\"10\" fill=\"none\" \
         stroke=\"#999\"/>\
         <line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" \
         stroke=\"#e6550d\" stroke-width=\"2\"/>\
         <g font-size=\"10\"><text x=\"{lx:.1}\" y=\"{:.1}\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">1</text>\
         <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#e6550d\">\
         threshold {}</text></g>",
        ly - 3.0,
        ly + 13.0,
        ly + 22.0,
        lx + lw,
        ly + 22.0,
        ly + 34.0,
        sig3(threshold)
    );
}

/// Units by number of passing concepts (the last bin is "k or more").
pub(super) fn passing_svg(side: &SideReport) -> String {
    let n = side.passing_histogram.len();
    let ticks: Vec<(f64, String)> = (0..n)
        .map(|k| {
            let label = if k + 1 == n && n > 1 {
                format!("{k}+")
            } else {
                k.to_string()
            };
            (k as f64 + 0.5, label)
        })
        .collect();
    let tips: Vec<String> = ticks
        .iter()
        .zip(&side.passing_histogram)
        .map(|((_, k), c)| format!("{c} units pass {k} concepts"))
        .collect();
    histogram_svg(
        &format!("{}: passing concepts per alive unit", side.kind),
        &side.passing_histogram,
        &ticks,
        &tips,
        "passing concepts",
        "#4c72b0",
    )
}

/// Units by log10(density), 30 bins over [−10, 0] (values outside land in the end bins).
pub(super) fn density_svg(side: &SideReport) -> String {
    let counts = density_bins(&side.log10_density);
    let width = (DENSITY_HI - DENSITY_LO) / DENSITY_BINS as f64;
    let per_decade = (1.0 / width).round() as usize;
    let ticks: Vec<(f64, String)> = (0..=DENSITY_BINS)
        .step_by(per_decade * 2)
        .map(|b| (b as f64, format!("{}", DENSITY_LO + b as f64 * width)))
        .collect();
    let tips: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(b, c)| {
            let lo = DENSITY_LO + b as f64 * width;
            format!(
                "{c} units with log10 density in [{}, {})",
                sig3(lo),
                sig3(lo + width)
            )
        })
        .collect();
    histogram_svg(
        &format!("{}: log10(density) per unit (dead = −10)", side.kind),
        &counts,
        &ticks,
        &tips,
        "log10(fraction of tokens where the unit is > 0)",
        "#55a868",
    )
}

/// A bar chart of `counts`; `ticks` are (position in bar widths, label) under the x axis,
/// `tips` one tooltip per bar.
fn histogram_svg(
    title: &str,
    counts: &[u64],
    ticks: &[(f64, String)],
    tips: &[String],
    x_title: &str,
    colour: &str,
) -> String {
    let (w, ht) = (460.0, 260.0);
    let (left, right, top, bottom) = (54.0, 14.0, 30.0, 46.0);
    let (pw, ph) = (w - left - right, ht - top - bottom);
    let mut s = svg_open(w, ht);
    title_text(&mut s, w / 2.0, 18.0, title);
    // Whole-number gridlines: a step of 1, 2 or 5 × 10^k, at most 5 of them above 0.
    let top_count = counts.iter().copied().max().unwrap_or(0).max(1);
    let step = count_step(top_count);
    let n_ticks = top_count.div_ceil(step);
    let max = (n_ticks * step) as f64;
    y_axis(
        &mut s,
        left,
        top,
        pw,
        ph,
        step as f64,
        n_ticks as usize,
        false,
    );
    let bw = pw / counts.len().max(1) as f64;
    for (i, &c) in counts.iter().enumerate() {
        let bh = c as f64 / max * ph;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" \
             fill=\"{colour}\"><title>{}</title></rect>",
            left + i as f64 * bw + 0.5,
            top + ph - bh,
            (bw - 1.0).max(0.5),
            esc(tips.get(i).map_or("", |t| t.as_str()))
        );
    }
    for (pos, label) in ticks {
        let x = left + pos * bw;
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            top + ph + 15.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" \
         fill=\"#555\">{}</text></svg>",
        left + pw / 2.0,
        ht - 8.0,
        esc(x_title)
    );
    s
}

/// `class` count of a side and its rate: over alive units, except `dead` over all units.
pub(super) fn class_count_rate(side: &SideReport, class: &str) -> (usize, f64) {
    let s = &side.summary;
    let alive = side.units.saturating_sub(s.dead);
    let ratio = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    match class {
        "polysemantic" => (s.polysemantic, s.polysemantic_rate),
        "monosemantic" => (s.monosemantic, s.monosemantic_rate),
        "unexplained" => (s.unexplained, ratio(s.unexplained, alive)),
        _ => (s.dead, ratio(s.dead, side.units)),
    }
}

/// Counts of `log10_density` in [`DENSITY_BINS`] equal bins over [−10, 0]; out-of-range values
/// go to the end bins, NaN nowhere.
pub(super) fn density_bins(values: &[f32]) -> Vec<u64> {
    let mut counts = vec![0u64; DENSITY_BINS];
    for &v in values.iter().filter(|v| !v.is_nan()) {
        let b = ((v as f64 - DENSITY_LO) * DENSITY_BINS as f64 / (DENSITY_HI - DENSITY_LO)).floor();
        counts[b.clamp(0.0, (DENSITY_BINS - 1) as f64) as usize] += 1;
    }
    counts
}

pub(super) fn class_colour(class: &str) -> &'static str {
    match class {
        "polysemantic" => "#c0392b",
        "monosemantic" => "#1e8449",
        "unexplained" => "#7f8c8d",
        "dead" => "#2c3e50",
        _ => "#8e44ad",
    }
}

/// At most `n` characters, with `…` when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut o: String = s.chars().take(n - 1).collect();
        o.push('…');
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_bins_clamp_to_the_ends() {
        // −10 in the first bin, −0.3 in the last, −1.5 in bin 25; NaN nowhere.
        let bins = density_bins(&[-10.0, -2.0, -1.5, -0.3, 0.0, -12.0, f32::NAN]);
        let mut want = vec![0u64; 30];
        want[0] = 2;
        want[24] = 1;
        want[25] = 1;
        want[29] = 2;
        assert_eq!(bins, want);
    }
}
