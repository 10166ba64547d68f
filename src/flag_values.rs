//! Value parsers for numeric flags: a zero, negative or out-of-range value is refused while the
//! command line is parsed (so `unravel run` also catches it before its first stage), with a
//! message saying what the flag accepts. Flags taking them set `allow_negative_numbers`, so
//! `--lr -0.001` reads as a (refused) value, not as an unknown flag `-0`.

use std::str::FromStr;

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("expected {what}, got `{s}`"))
}

/// A whole number of at least 1 (counts, sizes, tokens).
pub fn at_least_1<T: FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    if s.trim().starts_with('-') {
        return Err("must be a whole number of at least 1".into());
    }
    let v: T = parse(s, "a whole number of at least 1")?;
    if v < T::from(1) {
        return Err("must be at least 1".into());
    }
    Ok(v)
}

/// A whole number, 0 allowed (a negative one gets a clear message, not "invalid digit").
pub fn whole<T: FromStr>(s: &str) -> Result<T, String> {
    if s.trim().starts_with('-') {
        return Err("must be a whole number of at least 0".into());
    }
    parse(s, "a whole number of at least 0")
}

fn float(s: &str) -> Result<f64, String> {
    let v: f64 = parse(s, "a number")?;
    if !v.is_finite() {
        return Err("must be a finite number".into());
    }
    Ok(v)
}

/// A finite number > 0 (f64).
pub fn positive_f64(s: &str) -> Result<f64, String> {
    match float(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be a positive number".into()),
    }
}

/// A finite number > 0 that f32 holds.
pub fn positive_f32(s: &str) -> Result<f32, String> {
    let v = positive_f64(s)? as f32;
    if !v.is_finite() || v == 0.0 {
        return Err("must be a positive number within f32's range".into());
    }
    Ok(v)
}

/// A finite number >= 0 (f64).
pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    match float(s)? {
        v if v >= 0.0 => Ok(v),
        _ => Err("must be a number >= 0".into()),
    }
}

/// A finite number >= 0 that f32 holds.
pub fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v = non_negative_f64(s)? as f32;
    if !v.is_finite() {
        return Err("must be a number >= 0 within f32's range".into());
    }
    Ok(v)
}

/// A fraction in [0, 1].
pub fn fraction(s: &str) -> Result<f64, String> {
    match float(s)? {
        v if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("must be a fraction in [0, 1]".into()),
    }
}

/// A probability in (0, 1].
pub fn probability(s: &str) -> Result<f64, String> {
    match float(s)? {
        v if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err("must be a probability in (0, 1]".into()),
    }
}

/// A probability or cosine in (0, 1] that f32 holds.
pub fn probability_f32(s: &str) -> Result<f32, String> {
    probability(s).map(|v| v as f32)
}

/// An Adam β in [0, 1) that f32 holds (1 would divide by zero in the bias correction).
pub fn adam_beta(s: &str) -> Result<f32, String> {
    match float(s)? {
        v if (0.0..1.0).contains(&v) => Ok(v as f32),
        _ => Err("must be in [0, 1)".into()),
    }
}

/// A fraction in (0, 1) (exclusive: a threshold on a cumulative share, say).
pub fn open_fraction(s: &str) -> Result<f64, String> {
    match float(s)? {
        v if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err("must be a fraction strictly between 0 and 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_zero_negative_and_absurd_values() {
        assert_eq!(at_least_1::<usize>("4096"), Ok(4096));
        assert_eq!(at_least_1::<u64>("1_000_000"), Ok(1_000_000));
        assert_eq!(
            at_least_1::<usize>("0"),
            Err("must be at least 1".to_string())
        );
        assert!(at_least_1::<usize>("-3")
            .unwrap_err()
            .contains("at least 1"));
        assert!(at_least_1::<usize>("x").unwrap_err().contains("`x`"));
        assert_eq!(
            positive_f32("-0.001"),
            Err("must be a positive number".to_string())
        );
        assert!(positive_f32("1e60").is_err());
        assert!(positive_f64("nan").is_err() && positive_f64("inf").is_err());
        assert_eq!(positive_f64("1e-3"), Ok(1e-3));
        assert_eq!(fraction("1"), Ok(1.0));
        assert!(fraction("1.5").is_err() && probability("0").is_err());
        assert!(open_fraction("1").is_err() && open_fraction("0.99").is_ok());
        assert_eq!(whole::<u64>("0"), Ok(0));
        assert!(non_negative_f32("-1").is_err() && non_negative_f64("0").is_ok());
        assert_eq!(adam_beta("0"), Ok(0.0));
        assert_eq!(adam_beta("1"), Err("must be in [0, 1)".to_string()));
        assert!(adam_beta("0.999").is_ok() && adam_beta("-0.1").is_err());
    }
}
