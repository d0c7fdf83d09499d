//! The one duration grammar of every signoff configuration file: a sum of a number and a
//! unit, `ms`, `s`, `m`, `h` or `d` — `500ms`, `90s`, `15m`, `1h30m`, `7d`.

use std::time::Duration;

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: use numbers with a unit ms, s, m, h or d, e.g. \"500ms\", \"90s\", \"15m\", \"1h30m\", \"7d\""
)]
pub struct BadDuration(pub String);

/// Parses `500ms`, `90s`, `15m`, `24h`, `7d`, and sums such as `1h30m` or `1s500ms`.
pub fn parse(text: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration(text.to_owned());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let after = &rest[digits..];
        let (unit_len, millis_per_unit) = if after.starts_with("ms") {
            (2, 1)
        } else {
            match after.bytes().next() {
                Some(b's') => (1, 1_000),
                Some(b'm') => (1, 60_000),
                Some(b'h') => (1, 3_600_000),
                Some(b'd') => (1, 86_400_000),
                _ => return Err(bad()),
            }
        };
        let millis = number.checked_mul(millis_per_unit).ok_or_else(bad)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(bad)?;
        rest = &after[unit_len..];
    }
    Ok(total)
}

/// Formats `d` the way [`parse`] reads it: `1d`, `1h30m`, `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    let mut millis = d.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, scale) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= scale {
            out.push_str(&format!("{}{unit}", millis / scale));
            millis %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_sums_of_them() {
        for (text, millis) in [
            ("500ms", 500),
            ("90s", 90_000),
            ("15m", 900_000),
            ("24h", 86_400_000),
            ("7d", 604_800_000),
            ("1h30m", 5_400_000),
            ("1s500ms", 1_500),
            ("0s", 0),
            (" 3s ", 3_000),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(millis)), "{text}");
            let d = Duration::from_millis(millis);
            assert_eq!(parse(&format(d)), Ok(d), "{text} formats back");
        }
        assert_eq!(format(Duration::from_millis(90_500)), "1m30s500ms");
    }

    #[test]
    fn anything_else_is_refused_with_the_grammar() {
        for text in [
            "",
            "s",
            "10",
            "10x",
            "1.5h",
            "-1s",
            "1 h",
            "10msx",
            "ms",
            "18446744073709551615d",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains("\"500ms\""), "{text}: {err}");
        }
    }
}
