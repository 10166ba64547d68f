//! Pass/fail checks of a verification against thresholds (`verify --min-mmcs 0.98`, ...): the
//! command prints them as a table and fails when one fails.

/// One check: `name value` against `threshold` (as shown, e.g. `>= 0.98`).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub value: f64,
    pub threshold: String,
    pub pass: bool,
}

impl Check {
    /// Passes when `value >= min`.
    pub fn at_least(name: &'static str, value: f64, min: f64) -> Check {
        Check {
            name,
            value,
            threshold: format!(">= {min}"),
            pass: value >= min,
        }
    }

    /// Passes when `value <= max`.
    pub fn at_most(name: &'static str, value: f64, max: f64) -> Check {
        Check {
            name,
            value,
            threshold: format!("<= {max}"),
            pass: value <= max,
        }
    }
}
