//! SVG documents and elements, in two styles:
//! - [`Svg`]: a titled document built element by element (the toy figures: sans-serif text,
//!   coordinates with one or two decimals, a tooltip on every rect);
//! - [`svg_open`], [`title_text`], [`y_axis`]: the frame of the audit report's figures
//!   (system-ui text, one decimal), written into a `String` that the figure goes on writing.

use std::fmt::Write;

use super::escape::{esc, esc_text};
use super::format::pct;

/// The standalone-SVG namespace (the one URL the output may contain).
pub const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// A titled SVG document on a white background, built element by element.
pub struct Svg {
    body: String,
    w: f64,
    h: f64,
}

impl Svg {
    pub fn new(w: f64, h: f64, title: &str) -> Svg {
        let mut s = Svg {
            body: String::new(),
            w,
            h,
        };
        s.text(w / 2.0, 22.0, 16.0, "middle", title);
        s
    }

    pub fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, t: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" font-family="sans-serif">{}</text>"#,
            esc_text(t)
        );
    }

    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), colour: &str, width: f64) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.2}" y1="{y1:.2}" x2="{x2:.2}" y2="{y2:.2}" stroke="{colour}" stroke-width="{width}"/>"#
        );
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, tip: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{fill}"><title>{}</title></rect>"#,
            esc_text(tip)
        );
    }

    pub fn circle(&mut self, x: f64, y: f64, r: f64, fill: &str, stroke: &str) {
        let _ = writeln!(
            self.body,
            r#"<circle cx="{x:.2}" cy="{y:.2}" r="{r:.2}" fill="{fill}" stroke="{stroke}"/>"#
        );
    }

    /// A dashed horizontal line from `x1` to `x2` at height `y` (reference levels).
    pub fn dashed_hline(&mut self, x1: f64, x2: f64, y: f64, colour: &str) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{colour}" stroke-dasharray="4 3"/>"#
        );
    }

    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"{SVG_NS}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = self.w,
            h = self.h
        )
    }
}

/// Opens a standalone SVG document of `w`×`h` px (scales down to its container inline).
pub fn svg_open(w: f64, h: f64) -> String {
    format!(
        "<svg xmlns=\"{SVG_NS}\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" \
         font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>"
    )
}

/// A figure's title: centred on `x`, or starting at `x` near the left edge.
pub fn title_text(s: &mut String, x: f64, y: f64, text: &str) {
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
pub fn y_axis(
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
