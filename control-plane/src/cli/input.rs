//! Reading what the command line names: key files, times, serial ranges.

use std::path::Path;

use super::CliError;

/// The public keys in a file: every line that is not empty or a `#` comment.
pub(super) fn read_keys(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no public key",
            path.display()
        )));
    }
    Ok(keys)
}

pub(super) fn read_one_key(path: &Path) -> Result<String, CliError> {
    let mut keys = read_keys(path)?;
    if keys.len() > 1 {
        return Err(CliError::Usage(format!(
            "{} holds {} keys; give a file with exactly one",
            path.display(),
            keys.len()
        )));
    }
    Ok(keys.remove(0))
}

/// RFC 3339 or Unix seconds.
pub(super) fn parse_time(s: &str) -> Result<i64, CliError> {
    if let Ok(unix) = s.parse::<i64>() {
        return Ok(unix);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            CliError::Usage(format!(
                "--until: {s:?} is not a time (expected RFC 3339 like 2026-12-31T18:00:00Z, or Unix seconds)"
            ))
        })
}

/// `N` or `N-M`.
pub(super) fn parse_serials(s: &str) -> Result<(u64, u64), CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{s:?} is not a serial or a range (expected N or N-M, e.g. 42 or 100-199)"
        ))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo, hi),
        None => (s, s),
    };
    let lo = lo.trim().parse::<u64>().map_err(|_| bad())?;
    let hi = hi.trim().parse::<u64>().map_err(|_| bad())?;
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::EXIT_USAGE;

    #[test]
    fn times() {
        assert_eq!(parse_time("1800000000").unwrap(), 1_800_000_000);
        assert_eq!(parse_time("2027-01-15T08:00:00Z").unwrap(), 1_800_000_000);
        assert_eq!(
            parse_time("2027-01-15T09:00:00+01:00").unwrap(),
            1_800_000_000
        );
        let e = parse_time("tomorrow").unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn serials() {
        assert_eq!(parse_serials("42").unwrap(), (42, 42));
        assert_eq!(parse_serials("100-199").unwrap(), (100, 199));
        for bad in ["", "a", "1-", "-5", "1-2-3", "0x10"] {
            assert!(parse_serials(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("k.pub");
        std::fs::write(&f, "# comment\n\nssh-ed25519 AAAA a\nssh-ed25519 BBBB b\n").unwrap();
        assert_eq!(read_keys(&f).unwrap().len(), 2);
        assert!(
            read_one_key(&f)
                .unwrap_err()
                .to_string()
                .contains("holds 2 keys")
        );
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(
            read_keys(&f)
                .unwrap_err()
                .to_string()
                .contains("holds no public key")
        );
        assert!(matches!(
            read_keys(&tmp.path().join("missing.pub")),
            Err(CliError::ReadFile { .. })
        ));
    }
}
