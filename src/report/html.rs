//! The audit as one static, self-contained HTML page (and its figures as standalone SVG files).
//!
//! Everything is inline (CSS, SVG, the unit browser's code; no fonts, no URLs) so the page opens
//! offline, can be mailed or archived as one file, and renders the same years later; the unit
//! browser at its end (super::browser) reads the per-unit data in `units/` beside it, and says
//! so when that folder is missing. The only links are anchors of the page (`#feature-12`). The SVG is written by hand
//! (the figures are in [`super::figures`], drawn with [`crate::plot`]): a few rects and texts are
//! easier to read and to check than a plotting library's output.
//!
//! Every text taken from the report goes through [`esc`] (or [`visible`], for token texts), which
//! also escapes `/`: nothing from the report can ever form a URL, a tag or an entity in the page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::figures::{
    class_colour, class_count_rate, density_svg, heatmap_svg, passing_svg, rates_svg, CLASSES,
};
use crate::analysis::report::{
    AuditReport, Card, Example, SideReport, UnitResult, RATES_PLOT_FILE,
};
use crate::plot::colour::token_background;
use crate::plot::{pct, sig3};

/// Escapes report text (in [`crate::plot`]; re-exported for the run's index page).
pub(crate) use crate::plot::esc;

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
    super::browser::section_units(&mut h);
    h.push_str("</body>\n</html>\n");
    h
}

/// Writes [`render_audit_html`] to `path`, atomically.
pub fn write_audit_html(report: &AuditReport, path: &Path) -> std::io::Result<()> {
    crate::io::write_atomic(path, render_audit_html(report).as_bytes())
}

/// Writes the report's figures as standalone SVG files into `dir` (created if missing):
/// `rates.svg`, then per side `heatmap-<kind>.svg`, `passing-<kind>.svg`, `density-<kind>.svg`,
/// each with its PNG copy beside it. Returns the SVG paths written, in that order.
pub fn write_audit_svgs(report: &AuditReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = vec![(RATES_PLOT_FILE.to_string(), rates_svg(report))];
    for side in &report.sides {
        let kind = file_safe(&side.kind);
        files.push((format!("heatmap-{kind}.svg"), heatmap_svg(report, side)));
        files.push((format!("passing-{kind}.svg"), passing_svg(side)));
        files.push((format!("density-{kind}.svg"), density_svg(side)));
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, svg) in files {
        let path = dir.join(name);
        crate::plot::write_svg(&path, &svg)?;
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
         <a href=\"#cards\">cards</a> · <a href=\"#units\">every unit</a></nav>\n</header>\n",
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
        "<div class=\"card-head\"><a class=\"unit\" href=\"#{}\">unit {}</a> {}",
        super::browser::unit_anchor(&side.kind, card.unit),
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
// Lookups and text
// ---------------------------------------------------------------------------------------------

/// A unit's result, found by its `unit` field (results need not be indexed by unit).
fn unit_result(side: &SideReport, unit: usize) -> Option<&UnitResult> {
    match side.unit_results.get(unit) {
        Some(u) if u.unit == unit => Some(u),
        _ => side.unit_results.iter().find(|u| u.unit == unit),
    }
}

fn badge(class: &str) -> String {
    format!(
        "<span class=\"badge\" style=\"background:{}\">{}</span>",
        class_colour(class),
        esc(class)
    )
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

    /// The page without its one script, the unit browser's fixed code (no report text in it).
    fn without_browser_code(html: &str) -> String {
        let code = format!("<script>\n{}</script>\n", super::super::browser::BROWSER_JS);
        assert_eq!(html.matches("<script").count(), 1);
        assert_eq!(html.matches(&code).count(), 1);
        html.replace(&code, "")
    }

    #[test]
    fn document_shape_cards_and_no_urls() {
        let r = sample();
        let html = without_browser_code(&render_audit_html(&r));
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
        let html = without_browser_code(&render_audit_html(&sample()));
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
        assert!(html.contains("<title>1 units pass 2+ concepts</title>"));
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
            let png = std::fs::read(p.with_extension("png")).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{}", p.display());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 14); // 7 SVGs, 7 PNGs
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
