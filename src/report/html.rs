//! The audit as one static, self-contained HTML page (and its figures as standalone SVG files).
//!
//! Everything is inline (CSS, SVG; no script, no fonts, no URLs) so the page opens offline, can be
//! mailed or archived as one file, and renders the same years later. The SVG is written by hand:
//! a few rects and texts are easier to read and to check than a plotting library's output.
//!
//! Every text taken from the report goes through [`esc`] (or [`visible`], for token texts), which
//! also escapes `/`: nothing from the report can ever form a URL, a tag or an entity in the page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analysis::report::{AuditReport, Card, Example, SideReport, UnitResult};

/// The unit classes, in the order tables and charts show them.
const CLASSES: [&str; 4] = ["polysemantic", "monosemantic", "unexplained", "dead"];

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

/// The standalone-SVG namespace (the one URL the output may contain).
const SVG_NS: &str = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// The whole report as one HTML5 document.
pub fn render_audit_html(report: &AuditReport) -> String {
    let mut h = String::with_capacity(1 << 16);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        h,
        "<title>Polysemanticity audit: {}</title>",
        esc(&report.dataset)
    );
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>\n<body>");
    section_header(&mut h, report);
    section_rates(&mut h, report);
    section_concepts(&mut h, report);
    section_heatmaps(&mut h, report);
    section_histograms(&mut h, report);
    section_cards(&mut h, report);
    h.push_str("</body>\n</html>\n");
    h
}

/// Writes [`render_audit_html`] to `path`, atomically.
pub fn write_audit_html(report: &AuditReport, path: &Path) -> std::io::Result<()> {
    crate::io::write_atomic(path, render_audit_html(report).as_bytes())
}

/// Writes the report's figures as standalone SVG files into `dir` (created if missing):
/// `rates.svg`, then per side `heatmap-<kind>.svg`, `passing-<kind>.svg`, `density-<kind>.svg`.
/// Returns the paths written, in that order.
pub fn write_audit_svgs(report: &AuditReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = vec![("rates.svg".to_string(), rates_svg(report))];
    for side in &report.sides {
        let kind = file_safe(&side.kind);
        files.push((format!("heatmap-{kind}.svg"), heatmap_svg(report, side)));
        files.push((format!("passing-{kind}.svg"), passing_svg(side)));
        files.push((format!("density-{kind}.svg"), density_svg(side)));
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, svg) in files {
        let path = dir.join(name);
        crate::io::write_atomic(&path, svg.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Sections, top to bottom
// ---------------------------------------------------------------------------------------------

/// Section 1: title and the audit's parameters.
fn section_header(h: &mut String, r: &AuditReport) {
    h.push_str("<header>\n<h1>Polysemanticity audit</h1>\n<table class=\"kv\">\n");
    let rows: [(&str, String); 13] = [
        ("dataset", esc(&r.dataset)),
        ("model", esc(&r.model)),
        ("tokens", r.tokens.to_string()),
        ("score", esc(&r.score)),
        ("threshold", sig3(r.threshold)),
        ("min_support", r.min_support.to_string()),
        ("min_z", r.min_z.to_string()),
        ("min_auroc", sig3(r.min_auroc)),
        ("topk_alpha", sig3(r.topk_alpha)),
        ("min_topk_lift", sig3(r.min_topk_lift)),
        ("top_k", r.top_k.to_string()),
        ("related_overlap", sig3(r.related_overlap)),
        ("concepts", r.concepts.len().to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    for side in &r.sides {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td>{} units of <code>{}</code> (source <code>{}</code>)</td></tr>",
            esc(&side.kind),
            side.units,
            esc(&side.hook),
            esc(&side.source)
        );
    }
    h.push_str("</table>\n");
    // Links only to anchors of this page.
    h.push_str(
        "<nav><a href=\"#rates\">rates</a> · <a href=\"#concepts\">concepts</a> · \
         <a href=\"#heatmaps\">heatmaps</a> · <a href=\"#histograms\">histograms</a> · \
         <a href=\"#cards\">cards</a></nav>\n</header>\n",
    );
}

/// Section 2, the headline: how many units of each side are polysemantic, monosemantic,
/// unexplained or dead — as a table and as a grouped bar chart.
fn section_rates(h: &mut String, r: &AuditReport) {
    h.push_str("<section id=\"rates\">\n<h2>Rate summary</h2>\n");
    h.push_str(
        "<p class=\"note\">Rates of polysemantic, monosemantic and unexplained units are over \
         alive units (units − dead); the dead rate is over all units.</p>\n",
    );
    if r.sides.is_empty() {
        h.push_str("<p>No sides audited.</p>\n</section>\n");
        return;
    }
    h.push_str("<div class=\"row\">\n<table class=\"grid\">\n<thead><tr><th>class</th>");
    for side in &r.sides {
        let _ = write!(h, "<th colspan=\"2\">{}</th>", esc(&side.kind));
    }
    h.push_str("</tr>\n<tr><th></th>");
    for _ in &r.sides {
        h.push_str("<th>units</th><th>rate</th>");
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for class in CLASSES {
        let _ = write!(h, "<tr><td>{}</td>", badge(class));
        for side in &r.sides {
            let (count, rate) = class_count_rate(side, class);
            let _ = write!(
                h,
                "<td class=\"num\">{count}</td><td class=\"num\">{}</td>",
                pct(rate)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("<tr class=\"total\"><td>all units</td>");
    for side in &r.sides {
        let _ = write!(h, "<td class=\"num\">{}</td><td></td>", side.units);
    }
    h.push_str("</tr>\n</tbody>\n</table>\n");
    let _ = writeln!(h, "<figure>{}</figure>\n</div>\n</section>", rates_svg(r));
}

/// Section 3: the concepts the units were scored against.
fn section_concepts(h: &mut String, r: &AuditReport) {
    h.push_str("<section id=\"concepts\">\n<h2>Concepts</h2>\n");
    if r.concepts.is_empty() {
        h.push_str("<p>No concepts.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table class=\"grid\">\n<thead><tr><th>concept</th><th>source</th><th>tokens</th>\
         <th>base rate</th></tr></thead>\n<tbody>\n",
    );
    for c in &r.concepts {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&c.name),
            esc(&c.source),
            c.tokens,
            pct(c.base_rate)
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// Section 4: per side, the cards' scores against every concept.
fn section_heatmaps(h: &mut String, r: &AuditReport) {
    h.push_str("<section id=\"heatmaps\">\n<h2>Heatmaps</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">Rows: the units shown as cards; columns: concepts; colour: the \
         <code>{}</code> score (clipped to [0, 1]). Outlined cells reach the threshold {}.</p>",
        esc(&r.score),
        sig3(r.threshold)
    );
    for side in &r.sides {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&side.kind));
        if side.cards.is_empty() || r.concepts.is_empty() {
            h.push_str("<p>No cards or no concepts.</p>\n");
            continue;
        }
        let _ = writeln!(
            h,
            "<figure class=\"scroll\">{}</figure>",
            heatmap_svg(r, side)
        );
    }
    h.push_str("</section>\n");
}

/// Section 5: per side, how many concepts units pass and how dense they are.
fn section_histograms(h: &mut String, r: &AuditReport) {
    h.push_str("<section id=\"histograms\">\n<h2>Histograms</h2>\n");
    for side in &r.sides {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<div class=\"row\">\n<figure>{}</figure>\n<figure>{}</figure>\n</div>",
            esc(&side.kind),
            passing_svg(side),
            density_svg(side)
        );
    }
    h.push_str("</section>\n");
}

/// Section 6: one card per shown unit (class, passing concepts with all four scores, top contexts).
fn section_cards(h: &mut String, r: &AuditReport) {
    h.push_str("<section id=\"cards\">\n<h2>Cards</h2>\n");
    h.push_str(
        "<p class=\"note\">Token shading: activation / the unit's largest activation in the \
         examples shown (orange positive, blue negative). The top-activating token of each \
         example is bold and underlined. · marks a space, ↵ a newline, ⇥ a tab. Hover a token \
         for its activation.</p>\n",
    );
    for side in &r.sides {
        let _ = writeln!(
            h,
            "<h3>{} <span class=\"dim\">({} cards)</span></h3>\n<div class=\"cards\">",
            esc(&side.kind),
            side.cards.len()
        );
        for card in &side.cards {
            card_html(h, side, card);
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

/// One card. The only element of the page with class `card` (the check script counts them).
fn card_html(h: &mut String, side: &SideReport, card: &Card) {
    let _ = writeln!(
        h,
        "<div class=\"card\" data-side=\"{}\" data-unit=\"{}\">",
        esc(&side.kind),
        card.unit
    );
    let result = unit_result(side, card.unit);
    let _ = write!(
        h,
        "<div class=\"card-head\"><span class=\"unit\">unit {}</span> {}",
        card.unit,
        badge(&card.class)
    );
    if let Some(u) = result {
        let _ = write!(
            h,
            " <span class=\"dim\">density {} · max {}</span>",
            sig3(u.density),
            sig3(u.max_activation as f64)
        );
    }
    h.push_str("</div>\n");
    match result {
        Some(u) if !u.concepts.is_empty() => {
            h.push_str(
                "<table class=\"scores\"><thead><tr><th>concept</th><th>selectivity</th>\
                 <th>auroc</th><th>topk</th><th>iou</th><th>support</th></tr></thead><tbody>\n",
            );
            for pc in &u.concepts {
                let s = &pc.scores;
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td></tr>",
                    esc(&pc.concept),
                    sig3(s.selectivity),
                    sig3(s.auroc),
                    sig3(s.topk),
                    sig3(s.iou),
                    s.support
                );
            }
            h.push_str("</tbody></table>\n");
        }
        Some(_) => h.push_str("<p class=\"dim\">No concept passes.</p>\n"),
        None => h.push_str("<p class=\"dim\">No result for this unit.</p>\n"),
    }
    // Concepts that reached the threshold but were rejected, with the tests they failed.
    if let Some(u) = result.filter(|u| !u.rejected.is_empty()) {
        h.push_str("<p class=\"dim rejected\">Rejected: ");
        for (i, rc) in u.rejected.iter().enumerate() {
            let s = &rc.scores;
            let _ = write!(
                h,
                "{}{} (failed {}; auroc {}, topk {}, z {})",
                if i > 0 { "; " } else { "" },
                esc(&rc.concept),
                esc(&rc.failed.join(", ")),
                sig3(s.auroc),
                sig3(s.topk),
                sig3(s.z)
            );
        }
        h.push_str("</p>\n");
    }
    // Shade every example against the same scale (the largest activation in the card's
    // examples) so examples of one card compare by eye; |largest| only if none is positive.
    let acts = || {
        card.examples
            .iter()
            .flat_map(|e| e.activations.iter().copied().chain([e.activation]))
            .filter(|a| a.is_finite())
    };
    let scale = match acts().fold(0.0f32, f32::max) {
        m if m > 0.0 => m,
        _ => acts().fold(0.0f32, |m, a| m.max(a.abs())),
    };
    for ex in &card.examples {
        example_html(h, ex, scale);
    }
    h.push_str("</div>\n");
}

/// One top-activating context: its numbers, then its tokens shaded by activation.
fn example_html(h: &mut String, ex: &Example, scale: f32) {
    let concepts = if ex.focus_concepts.is_empty() {
        "none".to_string()
    } else {
        ex.focus_concepts
            .iter()
            .map(|c| esc(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        h,
        "<div class=\"ex\"><div class=\"ex-meta\">act <b>{}</b> · context {} · \
         focus concepts: {}</div>\
         <div class=\"toks\">",
        sig3(ex.activation as f64),
        ex.context_id,
        concepts
    );
    for (i, tok) in ex.tokens.iter().enumerate() {
        let a = ex.activations.get(i).copied().unwrap_or(f32::NAN);
        let class = if i == ex.focus {
            " class=\"focus\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<span{class} style=\"background:{}\" title=\"{}\">{}</span>",
            token_background(a, scale),
            sig3(a as f64),
            visible(tok)
        );
    }
    h.push_str("</div></div>\n");
}

// ---------------------------------------------------------------------------------------------
// SVG figures (standalone documents: each carries its own xmlns and fonts)
// ---------------------------------------------------------------------------------------------

/// Grouped bars: one group per class, one bar per side, height = rate.
fn rates_svg(r: &AuditReport) -> String {
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
fn heatmap_svg(r: &AuditReport, side: &SideReport) -> String {
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
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\">unit {}</text>",
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
    }
    s.push_str("</g>");
    // Legend: the colour scale in 20 steps, with the threshold marked.
    let (lx, ly, lw) = (left, top + nrows * CELL + 14.0, 200.0);
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
    let tx = lx + r.threshold.clamp(0.0, 1.0) * lw;
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
        sig3(r.threshold)
    );
    s.push_str("</svg>");
    s
}

/// Units by number of passing concepts (the last bin is "k or more").
fn passing_svg(side: &SideReport) -> String {
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
fn density_svg(side: &SideReport) -> String {
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

/// Opens a standalone SVG document of `w`×`h` px (scales down to its container inline).
fn svg_open(w: f64, h: f64) -> String {
    format!(
        "<svg xmlns=\"{SVG_NS}\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" \
         font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>"
    )
}

fn title_text(s: &mut String, x: f64, y: f64, text: &str) {
    let anchor = if x < 20.0 { "start" } else { "middle" };
    let _ = write!(
        s,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"13\" font-weight=\"600\" \
         text-anchor=\"{anchor}\">{}</text>",
        esc(text)
    );
}

/// Left axis with gridlines at 0, `step`, …, `n`·`step` (the top of the plot); `percent`
/// labels as percentages.
#[allow(clippy::too_many_arguments)]
fn y_axis(
    s: &mut String,
    left: f64,
    top: f64,
    pw: f64,
    ph: f64,
    step: f64,
    n: usize,
    percent: bool,
) {
    for k in 0..=n {
        let v = step * k as f64;
        let y = top + ph - ph * k as f64 / n as f64;
        let label = if percent { pct(v) } else { format!("{v}") };
        let _ = write!(
            s,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" \
             fill=\"#555\">{label}</text>",
            left + pw,
            left - 5.0,
            y + 3.5
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
         <line x1=\"{left:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
        top + ph,
        top + ph,
        left + pw,
        top + ph
    );
}

// ---------------------------------------------------------------------------------------------
// Numbers, colours, lookups
// ---------------------------------------------------------------------------------------------

/// The smallest 1, 2 or 5 × 10^k step that covers `max` in at most 5 steps.
fn count_step(max: u64) -> u64 {
    let mut mag = 1u64;
    loop {
        for m in [1, 2, 5] {
            if max.div_ceil(m * mag) <= 5 {
                return m * mag;
            }
        }
        mag *= 10;
    }
}

/// `class` count of a side and its rate: over alive units, except `dead` over all units.
fn class_count_rate(side: &SideReport, class: &str) -> (usize, f64) {
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

/// A unit's result, found by its `unit` field (results need not be indexed by unit).
fn unit_result(side: &SideReport, unit: usize) -> Option<&UnitResult> {
    match side.unit_results.get(unit) {
        Some(u) if u.unit == unit => Some(u),
        _ => side.unit_results.iter().find(|u| u.unit == unit),
    }
}

/// Counts of `log10_density` in [`DENSITY_BINS`] equal bins over [−10, 0]; out-of-range values
/// go to the end bins, NaN nowhere.
fn density_bins(values: &[f32]) -> Vec<u64> {
    let mut counts = vec![0u64; DENSITY_BINS];
    for &v in values.iter().filter(|v| !v.is_nan()) {
        let b = ((v as f64 - DENSITY_LO) * DENSITY_BINS as f64 / (DENSITY_HI - DENSITY_LO)).floor();
        counts[b.clamp(0.0, (DENSITY_BINS - 1) as f64) as usize] += 1;
    }
    counts
}

/// `x` with 3 significant digits: `0.123`, `12.3`, `1234`, `1.23e-5`.
fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "–".into()
        } else if x > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor();
    if !(-3.0..5.0).contains(&mag) {
        return format!("{x:.2e}");
    }
    let decimals = (2.0 - mag).max(0.0) as usize;
    let s = format!("{x:.decimals$}");
    // Rounding up can add a digit (9.996 → "10.00"): redo at the new magnitude.
    let rounded: f64 = s.parse().unwrap_or(x);
    let mag2 = rounded.abs().log10().floor();
    if mag2 > mag {
        let decimals = (2.0 - mag2).max(0.0) as usize;
        return format!("{rounded:.decimals$}");
    }
    s
}

/// A fraction as a percentage with 3 significant digits.
fn pct(x: f64) -> String {
    format!("{}%", sig3(x * 100.0))
}

/// White → dark blue for a score in [0, 1] (clipped); light grey for a missing score.
fn heat_colour(v: f64) -> String {
    if !v.is_finite() {
        return "#eeeeee".into();
    }
    let t = v.clamp(0.0, 1.0);
    let (r, g, b) = (
        255.0 + (8.0 - 255.0) * t,
        255.0 + (48.0 - 255.0) * t,
        255.0 + (107.0 - 255.0) * t,
    );
    format!(
        "#{:02x}{:02x}{:02x}",
        r.round() as u8,
        g.round() as u8,
        b.round() as u8
    )
}

/// Orange for positive activations, blue for negative, alpha = |a| / scale.
fn token_background(a: f32, scale: f32) -> String {
    if !a.is_finite() || scale <= 0.0 || a == 0.0 {
        return "transparent".into();
    }
    let alpha = (a.abs() / scale).clamp(0.0, 1.0);
    if a > 0.0 {
        format!("rgba(255,140,0,{alpha:.3})")
    } else {
        format!("rgba(60,120,220,{alpha:.3})")
    }
}

fn class_colour(class: &str) -> &'static str {
    match class {
        "polysemantic" => "#c0392b",
        "monosemantic" => "#1e8449",
        "unexplained" => "#7f8c8d",
        "dead" => "#2c3e50",
        _ => "#8e44ad",
    }
}

/// Bar colours of the sides, in report order.
fn side_colour(i: usize) -> &'static str {
    const PALETTE: [&str; 4] = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"];
    PALETTE[i % PALETTE.len()]
}

fn badge(class: &str) -> String {
    format!(
        "<span class=\"badge\" style=\"background:{}\">{}</span>",
        class_colour(class),
        esc(class)
    )
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/// Escapes text for HTML content, attribute values and XML alike. Also escapes `/` (so no URL,
/// comment or closing tag can come out of report text) and turns control characters other than
/// tab/newline into their visible Unicode pictures (they are invalid in XML).
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '/' => o.push_str("&#47;"),
            '\t' | '\n' => o.push(c),
            c if (c as u32) < 0x20 => o.push(char::from_u32(0x2400 + c as u32).unwrap_or('�')),
            '\u{7f}' => o.push('\u{2421}'),
            c => o.push(c),
        }
    }
    o
}

/// A token's text with its whitespace made visible (`·` space, `↵` newline, `⇥` tab, `␍` CR,
/// marked dim), escaped. An empty token shows as `∅`.
fn visible(tok: &str) -> String {
    if tok.is_empty() {
        return "<i class=\"ws\">∅</i>".into();
    }
    let mut o = String::with_capacity(tok.len() + 16);
    for c in tok.chars() {
        let mark = match c {
            ' ' => "·",
            '\n' => "↵",
            '\t' => "⇥",
            '\r' => "␍",
            _ => {
                let mut buf = [0u8; 4];
                o.push_str(&esc(c.encode_utf8(&mut buf)));
                continue;
            }
        };
        o.push_str("<i class=\"ws\">");
        o.push_str(mark);
        o.push_str("</i>");
    }
    o
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

/// A side kind as a file-name part: letters, digits, `-`, `_` only.
fn file_safe(kind: &str) -> String {
    let s: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "side".into()
    } else {
        s
    }
}

pub(crate) const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  margin: 0 auto; padding: 16px 28px 48px; max-width: 1500px; color: #222; background: #fafafa;
  font-size: 14px; line-height: 1.4; }
h1 { margin: 8px 0 12px; font-size: 26px; }
h2 { margin: 32px 0 8px; font-size: 20px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { margin: 18px 0 6px; font-size: 16px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px;
  background: #eee; padding: 0 3px; border-radius: 3px; }
nav { margin: 10px 0; }
nav a { color: #2a5db0; }
.note, .dim { color: #666; }
.note { margin: 4px 0 10px; max-width: 900px; }
table { border-collapse: collapse; background: #fff; }
table.kv th { text-align: left; padding: 2px 14px 2px 0; color: #555; font-weight: 600; }
table.kv td { padding: 2px 0; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: 4px 10px; }
table.grid th { background: #f0f0f0; }
table.grid tr.total td { font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; }
figure svg { max-width: 100%; height: auto; background: #fff; border: 1px solid #e3e3e3; }
figure.scroll { overflow-x: auto; }
figure.scroll svg { max-width: none; }
.badge { color: #fff; border-radius: 9px; padding: 1px 8px; font-size: 12px; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 14px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px;
  box-shadow: 0 1px 2px rgba(0,0,0,0.05); min-width: 0; }
.card-head { margin-bottom: 6px; }
.card-head .unit { font-weight: 700; font-size: 15px; margin-right: 4px; }
table.scores { font-size: 12px; margin: 4px 0 8px; width: 100%; }
table.scores th, table.scores td { border-bottom: 1px solid #eee; padding: 2px 6px; }
table.scores th { text-align: right; color: #555; font-weight: 600; }
table.scores th:first-child, table.scores td:first-child { text-align: left; }
table.scores td:first-child { overflow-wrap: anywhere; }
.ex { border-top: 1px solid #f0f0f0; padding: 5px 0; }
.ex-meta { font-size: 12px; color: #555; margin-bottom: 2px; }
.toks { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px;
  line-height: 1.75; }
/* Inline blocks: lines break between tokens, never inside one (unless wider than the card). */
.toks > span { display: inline-block; max-width: 100%; overflow-wrap: anywhere; border-radius: 2px;
  padding: 0 0.5px; line-height: 1.35; margin: 1px 0; }
.toks span.focus { font-weight: 700; text-decoration: underline; text-underline-offset: 3px;
  outline: 1px solid #c05800; }
.ws { color: #999; font-style: normal; }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::report::{
        ConceptInfo, PassingConcept, RejectedConcept, Scores, Summary, UnitResult, AUDIT_VERSION,
    };

    fn example(tokens: &[&str], acts: &[f32], focus: usize, concepts: &[&str]) -> Example {
        Example {
            activation: acts[focus],
            context_id: 7,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            activations: acts.to_vec(),
            focus,
            focus_concepts: concepts.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn unit(unit: usize, class: &str, concepts: &[&str]) -> UnitResult {
        UnitResult {
            unit,
            class: class.into(),
            density: 0.01 * (unit + 1) as f64,
            max_activation: 2.5,
            concepts: concepts
                .iter()
                .map(|c| PassingConcept {
                    concept: c.to_string(),
                    scores: Scores {
                        selectivity: 0.8123,
                        auroc: 0.95,
                        topk: 0.5,
                        iou: 0.25,
                        support: 40,
                        z: 12.5,
                    },
                })
                .collect(),
            rejected: vec![],
        }
    }

    /// Two sides, three concepts, five cards; tokens with markup, quotes, newlines, a URL.
    fn sample() -> AuditReport {
        let hostile = example(
            &[
                "<script>alert(1)</script>",
                " &",
                "\"q\"",
                "\n",
                "https://example.com",
                " x",
            ],
            &[0.5, -0.3, 2.0, 0.0, 1.0, 0.1],
            2,
            &["quote", "punct<&>"],
        );
        let plain = example(
            &["The", " cat", " sat", "."],
            &[0.1, 1.5, 0.2, 0.0],
            1,
            &["noun"],
        );
        let concepts = ["noun", "quote", "punct<&>"]
            .iter()
            .enumerate()
            .map(|(i, n)| ConceptInfo {
                name: n.to_string(),
                source: "regex".into(),
                tokens: 100 * (i as u64 + 1),
                base_rate: 0.01 * (i + 1) as f64,
            })
            .collect();
        let neurons = SideReport {
            kind: "neurons".into(),
            source: "blocks.0.mlp".into(),
            hook: "blocks.0.mlp.out".into(),
            units: 4,
            summary: Summary {
                polysemantic: 1,
                monosemantic: 1,
                unexplained: 1,
                dead: 1,
                polysemantic_rate: 1.0 / 3.0,
                monosemantic_rate: 1.0 / 3.0,
            },
            passing_histogram: vec![1, 1, 1],
            log10_density: vec![-10.0, -2.0, -1.5, -0.3],
            // Not in unit order: cards must find their result by `unit`.
            unit_results: vec![
                unit(3, "unexplained", &[]),
                unit(1, "polysemantic", &["noun", "quote"]),
                unit(2, "monosemantic", &["noun"]),
                unit(0, "dead", &[]),
            ],
            cards: vec![
                Card {
                    unit: 1,
                    class: "polysemantic".into(),
                    concept_scores: vec![0.9, 0.7, 0.1],
                    examples: vec![hostile.clone(), plain.clone()],
                },
                Card {
                    unit: 2,
                    class: "monosemantic".into(),
                    concept_scores: vec![0.8, 0.0, 0.05],
                    examples: vec![plain.clone()],
                },
            ],
        };
        let features = SideReport {
            kind: "features".into(),
            source: "sae/run1".into(),
            hook: "blocks.0.mlp.out".into(),
            units: 3,
            summary: Summary {
                polysemantic: 0,
                monosemantic: 2,
                unexplained: 1,
                dead: 0,
                polysemantic_rate: 0.0,
                monosemantic_rate: 2.0 / 3.0,
            },
            passing_histogram: vec![1, 2, 0],
            log10_density: vec![-3.0, -2.5, -1.0],
            unit_results: vec![
                unit(0, "monosemantic", &["quote"]),
                unit(1, "monosemantic", &["punct<&>"]),
                unit(2, "unexplained", &[]),
            ],
            cards: vec![
                Card {
                    unit: 0,
                    class: "monosemantic".into(),
                    concept_scores: vec![0.0, 0.95, 0.2],
                    examples: vec![hostile.clone()],
                },
                Card {
                    unit: 1,
                    class: "monosemantic".into(),
                    concept_scores: vec![0.1, 0.2, 0.6],
                    examples: vec![hostile, plain.clone()],
                },
                Card {
                    unit: 2,
                    class: "unexplained".into(),
                    concept_scores: vec![0.1, 0.1, 0.1],
                    examples: vec![plain],
                },
            ],
        };
        AuditReport {
            version: AUDIT_VERSION,
            dataset: "data/<tiny> & \"small\"".into(),
            model: "gpt2".into(),
            tokens: 12345,
            score: "selectivity".into(),
            threshold: 0.5,
            min_support: 5,
            min_z: 5.0,
            min_auroc: 0.55,
            topk_alpha: 0.01,
            min_topk_lift: 0.0,
            top_k: 100,
            related_overlap: 0.8,
            concepts,
            sides: vec![neurons, features],
        }
    }

    #[test]
    fn document_shape_cards_and_no_urls() {
        let r = sample();
        let html = render_audit_html(&r);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.ends_with("</body>\n</html>\n"));
        // One `class="card"` per card, nothing else.
        let cards: usize = r.sides.iter().map(|s| s.cards.len()).sum();
        assert_eq!(cards, 5);
        assert_eq!(html.matches("class=\"card\"").count(), cards);
        assert_eq!(html.matches("data-side=\"neurons\"").count(), 2);
        assert_eq!(html.matches("data-side=\"features\"").count(), 3);
        // Inline SVG: rates + 3 per side, each with the namespace.
        let ns = "xmlns=\"http://www.w3.org/2000/svg\"";
        assert_eq!(html.matches("<svg ").count(), 7);
        assert_eq!(html.matches(ns).count(), 7);
        // The namespace is the only URL, even though a token is one.
        let stripped = html.replace(ns, "");
        assert_eq!(stripped.matches("http://").count(), 0);
        assert_eq!(stripped.matches("https://").count(), 0);
        // "http" appears only in the 7 namespaces and the 3 escaped copies of the URL token.
        assert_eq!(html.matches("https:&#47;&#47;example.com").count(), 3);
        assert_eq!(html.matches("http").count(), 7 + 3);
    }

    #[test]
    fn report_text_is_escaped() {
        let html = render_audit_html(&sample());
        assert!(!html.contains("<script"));
        assert!(!html.contains("alert(1)</"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#47;script&gt;"));
        assert!(html.contains("data&#47;&lt;tiny&gt; &amp; &quot;small&quot;"));
        // Whitespace is visible: leading space, newline; quotes escaped.
        assert!(html.contains("<i class=\"ws\">·</i>&amp;"));
        assert!(html.contains("<i class=\"ws\">↵</i>"));
        assert!(html.contains("&quot;q&quot;"));
        assert!(html.contains("https:&#47;&#47;example.com"));
        // The concept name with markup, in tables, tooltips and focus lists.
        assert!(!html.contains("punct<&>"));
        assert!(html.contains("punct&lt;&amp;&gt;"));
        // No raw control characters or stray ampersands: every '&' starts an entity we write.
        for (i, _) in html.match_indices('&') {
            let rest = &html[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#47;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "bare & at {i}: {}",
                &rest[..rest.len().min(20)]
            );
        }
    }

    #[test]
    fn cards_use_results_found_by_unit_and_shade_tokens() {
        let html = render_audit_html(&sample());
        let first = html.find("data-unit=\"1\"").unwrap();
        let card = &html[first..first + html[first..].find("</div>\n</div>").unwrap()];
        // Unit 1 (at index 1 of unit_results, not 1 by chance: unit 3 sits at index 0) passes
        // noun and quote with these four scores.
        assert!(card.contains(
            "<td>noun</td><td class=\"num\">0.812</td><td class=\"num\">0.950</td>\
             <td class=\"num\">0.500</td><td class=\"num\">0.250</td><td class=\"num\">40</td>"
        ));
        assert!(card.contains("<td>quote</td>"));
        assert!(card.contains("density 0.0200"));
        // Scale = 2.0 (largest |activation| of the card's examples): focus token full orange.
        assert!(card.contains(
            "<span class=\"focus\" style=\"background:rgba(255,140,0,1.000)\" title=\"2.00\">\
             &quot;q&quot;</span>"
        ));
        assert!(card.contains("style=\"background:rgba(60,120,220,0.150)\" title=\"-0.300\""));
        assert!(card.contains("style=\"background:rgba(255,140,0,0.750)\" title=\"1.50\""));
        assert!(card.contains("focus concepts: quote, punct&lt;&amp;&gt;"));
    }

    #[test]
    fn cards_show_rejected_concepts_with_the_failed_tests() {
        let mut r = sample();
        let u = &mut r.sides[0].unit_results[2];
        assert_eq!(u.unit, 2);
        u.rejected.push(RejectedConcept {
            concept: "punct<&>".into(),
            scores: Scores {
                selectivity: 0.45,
                auroc: 0.468,
                topk: 0.0,
                iou: 0.003,
                support: 30,
                z: 9.0,
            },
            failed: vec!["auroc".into(), "topk".into()],
        });
        let html = render_audit_html(&r);
        let first = html.find("data-unit=\"2\"").unwrap();
        let card = &html[first..first + html[first..].find("</div>\n</div>").unwrap()];
        assert!(card.contains(
            "Rejected: punct&lt;&amp;&gt; (failed auroc, topk; auroc 0.468, topk 0, z 9.00)"
        ));
        // Only the unit that has one shows the line.
        assert_eq!(html.matches("Rejected: ").count(), 1);
        assert!(html.contains("<tr><th>min_auroc</th><td>0.550</td></tr>"));
    }

    #[test]
    fn rates_heatmap_and_histograms() {
        let r = sample();
        let html = render_audit_html(&r);
        // Rates: unexplained over alive units, dead over all.
        assert!(html.contains("<td class=\"num\">1</td><td class=\"num\">33.3%</td>"));
        assert!(html.contains("<td class=\"num\">1</td><td class=\"num\">25.0%</td>"));
        assert!(html.contains("<td class=\"num\">2</td><td class=\"num\">66.7%</td>"));
        // Heatmap: 5 cards × 3 concepts cells; outlined exactly where score ≥ 0.5.
        let outlined = r
            .sides
            .iter()
            .flat_map(|s| &s.cards)
            .flat_map(|c| &c.concept_scores)
            .filter(|&&v| v >= r.threshold)
            .count();
        assert_eq!(outlined, 5);
        assert_eq!(
            html.matches("stroke=\"#e6550d\" stroke-width=\"2\">")
                .count(),
            outlined
        );
        assert!(html.contains("<title>neurons unit 1 × quote: 0.700</title>"));
        assert_eq!(html.matches("<title>features unit ").count(), 9);
        // Density bins: −10 in the first bin, −0.3 in the last, −1.5 in bin 25.
        let bins = density_bins(&[-10.0, -2.0, -1.5, -0.3, 0.0, -12.0, f32::NAN]);
        let mut want = vec![0u64; 30];
        want[0] = 2;
        want[24] = 1;
        want[25] = 1;
        want[29] = 2;
        assert_eq!(bins, want);
        assert!(html.contains("<title>1 units pass 2+ concepts</title>"));
    }

    #[test]
    fn numbers_have_three_significant_digits() {
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(0.12345), "0.123");
        assert_eq!(sig3(12.345), "12.3");
        assert_eq!(sig3(-1.0), "-1.00");
        assert_eq!(sig3(9.996), "10.0");
        assert_eq!(sig3(0.0009996), "1.00e-3");
        assert_eq!(sig3(1234.0), "1234");
        assert_eq!(sig3(123456.0), "1.23e5");
        assert_eq!(sig3(f64::NAN), "–");
        assert_eq!(
            [1, 4, 5, 6, 11, 24, 26, 99, 1000].map(count_step),
            [1, 1, 1, 2, 5, 5, 10, 20, 200]
        );
        assert_eq!(pct(1.0 / 3.0), "33.3%");
    }

    #[test]
    fn svg_files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_audit_svgs(&sample(), dir.path()).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "rates.svg",
                "heatmap-neurons.svg",
                "passing-neurons.svg",
                "density-neurons.svg",
                "heatmap-features.svg",
                "passing-features.svg",
                "density-features.svg"
            ]
        );
        for p in &paths {
            let s = std::fs::read_to_string(p).unwrap();
            assert!(
                s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" "),
                "{}",
                p.display()
            );
            assert!(s.ends_with("</svg>"));
            assert_eq!(s.matches("<svg").count(), 1);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 7);
        let html_path = dir.path().join("sub/audit.html");
        write_audit_html(&sample(), &html_path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&html_path).unwrap(),
            render_audit_html(&sample())
        );
    }

    /// Writes the sample report (or the `audit.json` at `$UNRAVEL_SAMPLE_JSON`, if set) as HTML
    /// to `$UNRAVEL_SAMPLE_REPORT`, for scripts/check_report.py.
    #[test]
    #[ignore]
    fn write_sample_report() {
        let Ok(path) = std::env::var("UNRAVEL_SAMPLE_REPORT") else {
            eprintln!("UNRAVEL_SAMPLE_REPORT unset: nothing written");
            return;
        };
        let report = match std::env::var("UNRAVEL_SAMPLE_JSON") {
            Ok(json) => serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap(),
            Err(_) => sample(),
        };
        write_audit_html(&report, Path::new(&path)).unwrap();
    }
}
