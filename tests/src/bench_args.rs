//! Value parsers the benchmarks' clap arguments share.

use std::time::Duration;

/// A count of at least 1 (`_` allowed: `1_000_000`).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().replace('_', "").parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a count: {e}")),
    }
}

/// A whole number of seconds.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_seconds() {
        assert_eq!(positive("1_000_000"), Ok(1_000_000));
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert_eq!(seconds("90"), Ok(Duration::from_secs(90)));
        assert!(seconds("90s").is_err());
    }
}
