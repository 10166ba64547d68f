//! Plots and reports (SVG through plotters: vector output, no fonts needed at build time; the
//! viewer renders the text).

pub mod plots;
