//! Refusing sizes that cannot fit: a command estimates its footprint from its flags and calls
//! [`check_fits`] before allocating, so an impossible size ends in one line instead of an
//! allocation abort after the output folder was created.

/// Bytes the OS says a new allocation can get (`MemAvailable` of /proc/meminfo); `None` where
/// that is unknown (not Linux, or no such line), and then no check is made.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// A byte count for people: `25.6 GB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match b {
        b if b >= 1e12 => format!("{:.1} TB", b / 1e12),
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        _ => format!("{bytes} bytes"),
    }
}

/// A size that does not fit in the available memory.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} needs about {} of memory ({needed} bytes), but only {} is available; {hint}",
    human(*needed),
    human(*available)
)]
pub struct TooLarge {
    /// The flags that set the size.
    pub what: String,
    /// The estimated footprint in bytes.
    pub needed: u64,
    /// The bytes available.
    pub available: u64,
    /// What to lower.
    pub hint: String,
}

/// `Err` when `needed` bytes exceed the available memory; `what` names the flags that set the
/// size and `hint` says what to lower.
pub fn check_fits(what: &str, needed: u64, hint: &str) -> Result<(), TooLarge> {
    check_against(what, needed, available_bytes(), hint)
}

fn check_against(
    what: &str,
    needed: u64,
    available: Option<u64>,
    hint: &str,
) -> Result<(), TooLarge> {
    match available {
        Some(avail) if needed > avail => Err(TooLarge {
            what: what.to_string(),
            needed,
            available: avail,
            hint: hint.to_string(),
        }),
        _ => Ok(()),
    }
}

/// `a × b × ...` in u64, saturating (a product of flags can exceed u64).
pub fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |p, &f| p.saturating_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(2_048_000_000));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn refuses_only_what_exceeds_the_available_memory() {
        assert!(check_against("x", 10, Some(100), "h").is_ok());
        assert!(check_against("x", 10, None, "h").is_ok());
        let e = check_against("--d-sae 9", 25_600_000_000, Some(2_000_000_000), "lower it")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--d-sae 9 needs about 25.6 GB of memory (25600000000 bytes), but only 2.0 GB is available; lower it"
        );
        assert_eq!(product(&[u64::MAX, 2]), u64::MAX);
    }
}
