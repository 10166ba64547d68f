//! Palettes and colour scales.

/// Ten categorical colours (matplotlib's tab10), cycled for features and series.
pub const TAB10: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Four muted categorical colours (seaborn's "deep"), for a few groups side by side.
const DEEP4: [&str; 4] = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"];

/// The `i`-th colour of [`DEEP4`], cycling (the audit report's sides, in report order).
pub fn side_colour(i: usize) -> &'static str {
    DEEP4[i % DEEP4.len()]
}

/// Diverging blue–white–red for v in [−1, 1] (clipped), as `rgb(r,g,b)`.
pub fn diverging(v: f64) -> String {
    let v = v.clamp(-1.0, 1.0);
    let (r, g, b) = if v >= 0.0 {
        (1.0, 1.0 - v, 1.0 - v)
    } else {
        (1.0 + v, 1.0 + v, 1.0)
    };
    format!(
        "rgb({},{},{})",
        (r * 255.0) as u8,
        (g * 255.0) as u8,
        (b * 255.0) as u8
    )
}

/// Sequential white → dark blue for a score in [0, 1] (clipped), as `#rrggbb`; light grey for
/// a missing (non-finite) score.
pub fn heat_colour(v: f64) -> String {
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

/// A background shading an activation: orange for positive, blue for negative, alpha =
/// |a| / scale; transparent for zero, non-finite values or no scale.
pub fn token_background(a: f32, scale: f32) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_hit_their_ends() {
        assert_eq!(diverging(1.0), "rgb(255,0,0)");
        assert_eq!(diverging(-2.0), "rgb(0,0,255)");
        assert_eq!(diverging(0.0), "rgb(255,255,255)");
        assert_eq!(heat_colour(0.0), "#ffffff");
        assert_eq!(heat_colour(1.0), "#08306b");
        assert_eq!(heat_colour(f64::NAN), "#eeeeee");
        assert_eq!(token_background(0.0, 1.0), "transparent");
        assert_eq!(token_background(-0.5, 1.0), "rgba(60,120,220,0.500)");
        assert_eq!(side_colour(5), "#dd8452");
    }
}
