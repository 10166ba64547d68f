//! Plots and pages: [`plots`] draws the SVGs of `verify` and `analyze` through plotters (vector
//! output, no fonts needed at build time; the viewer renders the text); [`html`] writes the
//! audit's self-contained `report.html`, with its hand-written SVG figures in [`figures`] (through
//! the shared toolkit [`crate::plot`]). The `index.html` of an `unravel run` folder is the
//! pipeline's (`pipeline::index`).

pub mod browser;
mod figures;
pub mod html;
pub mod plots;
