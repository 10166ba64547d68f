//! Numbers as labels.

/// `x` with 3 significant digits: `0.123`, `12.3`, `1234`, `1.23e-5`.
pub fn sig3(x: f64) -> String {
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
pub fn pct(x: f64) -> String {
    format!("{}%", sig3(x * 100.0))
}

/// The smallest 1, 2 or 5 × 10^k step that covers `max` in at most 5 steps.
pub fn count_step(max: u64) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
