//! Plots and reports (SVG through plotters: vector output, no fonts needed at build time; the
//! viewer renders the text), and the audit's self-contained HTML page (`html`).

pub mod html;
pub mod index;
pub mod plots;
