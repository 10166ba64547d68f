//! The one SVG toolkit of the crate, shared by the audit report (`report::html`,
//! `report::figures`) and the toy experiments (`toy::plots`): escaping, colour scales, number
//! labels and the SVG primitives. Figures are hand-written SVG strings (no fonts, no script, no
//! URLs); only `report::plots` draws with plotters, for axes-heavy charts written to files.
//!
//! - escape.rs — text for HTML/SVG ([`esc`], strict; [`esc_text`], markup characters only)
//! - colour.rs — palettes and colour scales (diverging, sequential, activation shading)
//! - format.rs — numbers as labels (3 significant digits, percentages, axis steps)
//! - svg.rs    — documents and elements ([`Svg`] for toy figures; the report's figure frame)
//! - png.rs    — writing a figure: the SVG and its PNG copy ([`write_svg`])

pub mod colour;
pub mod escape;
pub mod format;
pub mod png;
pub mod svg;

pub use escape::{esc, esc_text};
pub use format::{count_step, pct, sig3};
pub use png::write_svg;
pub use svg::Svg;
