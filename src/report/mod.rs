//! Plots and reports (SVG through plotters: vector output, no fonts needed at build time; the
//! viewer renders the text), and the audit's self-contained HTML page (`html`) with its figures
//! (`figures`, hand-written SVG through the shared toolkit [`crate::plot`]).

mod figures;
pub mod html;
pub mod index;
pub mod plots;
