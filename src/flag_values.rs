//! Value parsers for numeric flags: a zero, negative or out-of-range value is refused while the
//! command line is parsed (so `unravel run` also catches it before its first stage), with a
//! message saying what the flag accepts. Flags taking them set `allow_negative_numbers`, so
//! `--lr -0.001` reads as a (refused) value, not as an unknown flag `-0`.
//!
//! The parsers return [`FlagValueError`]; clap prints it after `invalid value 'VALUE' for
//! '--FLAG <FLAG>': `, so the message says only what the flag accepts.

use std::str::FromStr;

/// A flag value refused by a parser of this module. `value` is the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagValueError {
    /// Not a number of the kind the flag takes (`expected`: "a number", say).
    #[error("expected {expected}, got `{value}`")]
    NotANumber {
        value: String,
        expected: &'static str,
    },
    /// A number outside the flag's range (`accepts`: "a positive number", say).
    #[error("must be {accepts}")]
    OutOfRange {
        value: String,
        accepts: &'static str,
    },
}

/// Refuses `s`: it must be `accepts`.
fn out_of_range<T>(s: &str, accepts: &'static str) -> Result<T, FlagValueError> {
    Err(FlagValueError::OutOfRange {
        value: s.to_string(),
        accepts,
    })
}

fn parse<T: FromStr>(s: &str, expected: &'static str) -> Result<T, FlagValueError> {
    s.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| FlagValueError::NotANumber {
            value: s.to_string(),
            expected,
        })
}

/// A whole number of at least 1 (counts, sizes, tokens).
pub fn at_least_1<T: FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, FlagValueError> {
    if s.trim().starts_with('-') {
        return out_of_range(s, "a whole number of at least 1");
    }
    let v: T = parse(s, "a whole number of at least 1")?;
    if v < T::from(1) {
        return out_of_range(s, "at least 1");
    }
    Ok(v)
}

/// A whole number, 0 allowed (a negative one gets a clear message, not "invalid digit").
pub fn whole<T: FromStr>(s: &str) -> Result<T, FlagValueError> {
    if s.trim().starts_with('-') {
        return out_of_range(s, "a whole number of at least 0");
    }
    parse(s, "a whole number of at least 0")
}

fn float(s: &str) -> Result<f64, FlagValueError> {
    let v: f64 = parse(s, "a number")?;
    if !v.is_finite() {
        return out_of_range(s, "a finite number");
    }
    Ok(v)
}

/// A finite number > 0 (f64).
pub fn positive_f64(s: &str) -> Result<f64, FlagValueError> {
    match float(s)? {
        v if v > 0.0 => Ok(v),
        _ => out_of_range(s, "a positive number"),
    }
}

/// A finite number > 0 that f32 holds.
pub fn positive_f32(s: &str) -> Result<f32, FlagValueError> {
    let v = positive_f64(s)? as f32;
    if !v.is_finite() || v == 0.0 {
        return out_of_range(s, "a positive number within f32's range");
    }
    Ok(v)
}

/// A finite number >= 0 (f64).
pub fn non_negative_f64(s: &str) -> Result<f64, FlagValueError> {
    match float(s)? {
        v if v >= 0.0 => Ok(v),
        _ => out_of_range(s, "a number >= 0"),
    }
}

/// A finite number >= 0 that f32 holds.
pub fn non_negative_f32(s: &str) -> Result<f32, FlagValueError> {
    let v = non_negative_f64(s)? as f32;
    if !v.is_finite() {
        return out_of_range(s, "a number >= 0 within f32's range");
    }
    Ok(v)
}

/// A fraction in [0, 1].
pub fn fraction(s: &str) -> Result<f64, FlagValueError> {
    match float(s)? {
        v if (0.0..=1.0).contains(&v) => Ok(v),
        _ => out_of_range(s, "a fraction in [0, 1]"),
    }
}

/// A probability in (0, 1].
pub fn probability(s: &str) -> Result<f64, FlagValueError> {
    match float(s)? {
        v if v > 0.0 && v <= 1.0 => Ok(v),
        _ => out_of_range(s, "a probability in (0, 1]"),
    }
}

/// A probability or cosine in (0, 1] that f32 holds.
pub fn probability_f32(s: &str) -> Result<f32, FlagValueError> {
    probability(s).map(|v| v as f32)
}

/// An Adam β in [0, 1) that f32 holds (1 would divide by zero in the bias correction).
pub fn adam_beta(s: &str) -> Result<f32, FlagValueError> {
    match float(s)? {
        v if (0.0..1.0).contains(&v) => Ok(v as f32),
        _ => out_of_range(s, "in [0, 1)"),
    }
}

/// A fraction in (0, 1) (exclusive: a threshold on a cumulative share, say).
pub fn open_fraction(s: &str) -> Result<f64, FlagValueError> {
    match float(s)? {
        v if v > 0.0 && v < 1.0 => Ok(v),
        _ => out_of_range(s, "a fraction strictly between 0 and 1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message clap prints after `invalid value ... for '--flag': `.
    fn said<T: std::fmt::Debug>(r: Result<T, FlagValueError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn refuses_zero_negative_and_absurd_values() {
        assert_eq!(at_least_1::<usize>("4096"), Ok(4096));
        assert_eq!(at_least_1::<u64>("1_000_000"), Ok(1_000_000));
        assert_eq!(said(at_least_1::<usize>("0")), "must be at least 1");
        assert_eq!(
            said(at_least_1::<usize>("-3")),
            "must be a whole number of at least 1"
        );
        assert_eq!(
            at_least_1::<usize>("x"),
            Err(FlagValueError::NotANumber {
                value: "x".into(),
                expected: "a whole number of at least 1"
            })
        );
        assert_eq!(
            said(at_least_1::<usize>("x")),
            "expected a whole number of at least 1, got `x`"
        );
        assert_eq!(said(positive_f32("-0.001")), "must be a positive number");
        assert_eq!(
            said(positive_f32("1e60")),
            "must be a positive number within f32's range"
        );
        assert!(positive_f64("nan").is_err() && positive_f64("inf").is_err());
        assert_eq!(said(positive_f64("inf")), "must be a finite number");
        assert_eq!(positive_f64("1e-3"), Ok(1e-3));
        assert_eq!(fraction("1"), Ok(1.0));
        assert!(fraction("1.5").is_err() && probability("0").is_err());
        assert!(open_fraction("1").is_err() && open_fraction("0.99").is_ok());
        assert_eq!(whole::<u64>("0"), Ok(0));
        assert!(non_negative_f32("-1").is_err() && non_negative_f64("0").is_ok());
        assert_eq!(adam_beta("0"), Ok(0.0));
        assert_eq!(
            adam_beta("1"),
            Err(FlagValueError::OutOfRange {
                value: "1".into(),
                accepts: "in [0, 1)"
            })
        );
        assert_eq!(said(adam_beta("1")), "must be in [0, 1)");
        assert!(adam_beta("0.999").is_ok() && adam_beta("-0.1").is_err());
    }
}
