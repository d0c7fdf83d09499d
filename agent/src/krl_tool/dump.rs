//! `krl dump`: a KRL as text for people, which is also a spec file where it can be.
//!
//! Like ssh-keygen's `krl_dump`, every revocation that the spec format can express is
//! printed as a spec line (`serial:`, `id:`, `key:`, `hash:`), and everything else as a
//! `#` comment: the header, the CA of each group of certificates (the spec format takes the
//! CA from `-s`, so one spec file holds the certificates of one CA), SHA-1 hashes (no spec
//! keyword takes a raw SHA-1) and key IDs that a spec line cannot carry (a `#`, blanks at
//! either end, control or invisible characters, invalid UTF-8), which are shown escaped.
//! Unlike ssh-keygen's listing, plain keys are printed as `key:` lines (ssh-keygen prints
//! their `hash:`, which revokes them by a different section) and SHA-256 hashes in base64
//! (ssh-keygen prints hex, which its own parser refuses), so the listing rebuilds the same
//! KRL.

use std::fmt;
use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::Digest as _;
use signoff_proto::krl::{CaScope, Krl};

use super::spec::blob_type_name;

/// Writes the listing of `krl`.
pub(crate) fn write_listing(krl: &Krl, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "# KRL version {}", krl.version())?;
    if krl.generated_date() == 0 {
        writeln!(out, "# Generated at {} (not set)", format_utc(0))?;
    } else {
        writeln!(out, "# Generated at {}", format_utc(krl.generated_date()))?;
    }
    if !krl.comment().is_empty() {
        writeln!(out, "# Comment: {}", Printable(krl.comment()))?;
    }
    if krl.is_empty() {
        writeln!(out, "\n# No revocations")?;
    }

    for (scope, revs) in krl.certs() {
        match scope {
            CaScope::Any => writeln!(
                out,
                "\n# Certificates signed by any CA (spec lines for them need -s none)"
            )?,
            CaScope::Key(blob) => writeln!(
                out,
                "\n# Certificates signed by CA {} {} (spec lines for them need -s with this CA)",
                TypeName(blob),
                Sha256Fingerprint(blob)
            )?,
        }
        for run in revs.serials() {
            if run.lo == run.hi {
                writeln!(out, "serial: {}", run.lo)?;
            } else {
                writeln!(out, "serial: {}-{}", run.lo, run.hi)?;
            }
        }
        for id in revs.key_ids() {
            if id.is_empty() {
                writeln!(out, "id:")?;
            } else if fits_spec_line(id) {
                writeln!(out, "id: {}", Printable(id))?;
            } else {
                writeln!(
                    out,
                    "# id (cannot be written in a spec file): \"{}\"",
                    id.escape_ascii()
                )?;
            }
        }
    }

    if !krl.explicit_keys().is_empty() {
        writeln!(out, "\n# Revoked keys")?;
        for blob in krl.explicit_keys() {
            match blob_type_name(blob) {
                Some(name) if is_key_type_word(name) => writeln!(
                    out,
                    "key: {} {} # {}",
                    Printable(name),
                    STANDARD.encode(blob),
                    Sha256Fingerprint(blob)
                )?,
                _ => writeln!(
                    out,
                    "# key of unreadable type, {} bytes: {}",
                    blob.len(),
                    Sha256Fingerprint(blob)
                )?,
            }
        }
    }
    if !krl.sha256s().is_empty() {
        writeln!(out, "\n# Revoked keys by SHA-256 fingerprint")?;
        for hash in krl.sha256s() {
            writeln!(out, "hash: SHA256:{}", STANDARD_NO_PAD.encode(hash))?;
        }
    }
    if !krl.sha1s().is_empty() {
        writeln!(
            out,
            "\n# Revoked keys by SHA-1 fingerprint (a spec file revokes these only with \
             \"sha1: KEY\")"
        )?;
        for hash in krl.sha1s() {
            writeln!(out, "# SHA1:{}", STANDARD_NO_PAD.encode(hash))?;
        }
    }
    Ok(())
}

/// Whether `id` reads back unchanged from `id: ...`: printable, no `#`, no blanks at the
/// ends (the spec reader strips them).
fn fits_spec_line(id: &[u8]) -> bool {
    is_printable_text(id) && !id.contains(&b'#') && !id.starts_with(b" ") && !id.ends_with(b" ")
}

/// A key type name that can stand as the first word of a key line.
fn is_key_type_word(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b'#')
}

/// Valid UTF-8 without control characters or invisible formatting characters (which
/// could make a terminal show something other than what is there).
fn is_printable_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        s.chars().all(|c| {
            !c.is_control()
                && !matches!(c,
                    '\u{00AD}' | '\u{061C}' | '\u{180E}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{FEFF}')
        })
    })
}

/// Bytes shown as they are when they are printable text, else escaped.
pub(crate) struct Printable<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if is_printable_text(self.0) => f.write_str(s),
            _ => write!(f, "{}", self.0.escape_ascii()),
        }
    }
}

/// The type name inside a key blob, for display.
struct TypeName<'a>(&'a [u8]);

impl fmt::Display for TypeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match blob_type_name(self.0) {
            Some(name) => write!(f, "{}", Printable(name)),
            None => f.write_str("(unreadable key type)"),
        }
    }
}

/// `SHA256:` and the unpadded base64 SHA-256 of a key blob, as `ssh-keygen -l` shows it.
struct Sha256Fingerprint<'a>(&'a [u8]);

impl fmt::Display for Sha256Fingerprint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = sha2::Sha256::digest(self.0);
        write!(f, "SHA256:{}", STANDARD_NO_PAD.encode(hash))
    }
}

/// Seconds since the Unix epoch as UTC ISO 8601, e.g. `2023-11-14T22:13:20Z`. Defined for
/// every `u64` (years past 9999 get more digits).
pub fn format_utc(secs: u64) -> String {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days end each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krl_tool::spec::{KeyOrCert, SpecReader, parse_key_line};
    use crate::krl_tool::test_keys::*;
    use signoff_proto::krl::KrlBuilder;

    fn listing(krl: &Krl) -> String {
        let mut out = Vec::new();
        write_listing(krl, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ca_scope(line: &str) -> CaScope {
        match parse_key_line(line.as_bytes()).unwrap().key {
            KeyOrCert::Key(k) => CaScope::key(&k),
            KeyOrCert::Cert(_) => panic!("certificate"),
        }
    }

    fn from_spec(ca: Option<CaScope>, spec: &str) -> KrlBuilder {
        let mut reader = SpecReader::new(ca);
        reader.read("spec", spec.as_bytes()).unwrap();
        reader.finish().unwrap()
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_utc(4_107_542_400), "2100-03-01T00:00:00Z");
        // Does not panic at the far end.
        assert!(format_utc(u64::MAX).ends_with("Z"));
    }

    #[test]
    fn full_listing() {
        let mut b = from_spec(
            Some(ca_scope(CA)),
            &format!(
                "serial: 1-3\nserial: 42\nid: alice\n{ALICE}\nhash: {CAROL_SHA256_FP}\nsha1: {ALICE}\n"
            ),
        );
        b.version(7)
            .generated_date(1_700_000_000)
            .comment(b"weekly");
        b.revoke_serial(&CaScope::Any, 9).unwrap();
        b.revoke_key_id(&CaScope::Any, b"").unwrap();
        let text = listing(&b.build());
        let alice_blob = ALICE.split(' ').nth(1).unwrap();
        assert_eq!(
            text,
            format!(
                "# KRL version 7\n\
                 # Generated at 2023-11-14T22:13:20Z\n\
                 # Comment: weekly\n\
                 \n\
                 # Certificates signed by any CA (spec lines for them need -s none)\n\
                 serial: 9\n\
                 id:\n\
                 \n\
                 # Certificates signed by CA ssh-ed25519 {CA_SHA256_FP} (spec lines for them need -s with this CA)\n\
                 serial: 1-3\n\
                 serial: 42\n\
                 id: alice\n\
                 \n\
                 # Revoked keys\n\
                 key: ssh-ed25519 {alice_blob} # {ALICE_SHA256_FP}\n\
                 \n\
                 # Revoked keys by SHA-256 fingerprint\n\
                 hash: {CAROL_SHA256_FP}\n\
                 \n\
                 # Revoked keys by SHA-1 fingerprint (a spec file revokes these only with \"sha1: KEY\")\n\
                 # {ALICE_SHA1_FP}\n"
            )
        );
    }

    #[test]
    fn empty_listing() {
        assert_eq!(
            listing(&KrlBuilder::new().build()),
            "# KRL version 0\n# Generated at 1970-01-01T00:00:00Z (not set)\n\n# No revocations\n"
        );
    }

    #[test]
    fn unprintable_key_ids_and_comment_are_escaped() {
        let mut b = KrlBuilder::new();
        for id in [
            &b"a#b"[..],
            b" lead",
            b"trail ",
            b"tab\there",
            b"esc\x1b[31m",
            b"caf\xe9",
            "bidi\u{202E}x".as_bytes(),
            "jos\u{e9}".as_bytes(),
        ] {
            b.revoke_key_id(&CaScope::Any, id).unwrap();
        }
        b.comment(b"line\nbreak");
        let text = listing(&b.build());
        assert!(text.contains("# Comment: line\\nbreak\n"), "{text}");
        for expected in [
            "\n# id (cannot be written in a spec file): \" lead\"\n",
            "\n# id (cannot be written in a spec file): \"a#b\"\n",
            "\n# id (cannot be written in a spec file): \"bidi\\xe2\\x80\\xaex\"\n",
            "\n# id (cannot be written in a spec file): \"caf\\xe9\"\n",
            "\n# id (cannot be written in a spec file): \"esc\\x1b[31m\"\n",
            "\nid: jos\u{e9}\n",
            "\n# id (cannot be written in a spec file): \"tab\\there\"\n",
            "\n# id (cannot be written in a spec file): \"trail \"\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn listing_is_a_spec_that_rebuilds_the_same_krl() {
        for (ca, spec) in [
            (
                Some(CaScope::Any),
                format!(
                    "serial: 1-3\nserial: 0x10\nid: alice\nid: with spaces\n{BOB}\nkey: {CAROL_ECDSA}\nhash: {ALICE_SHA256_FP}\n"
                ),
            ),
            (
                Some(ca_scope(CA)),
                "serial: 5\nserial: 100-20000\nid: x".to_owned(),
            ),
        ] {
            let mut b = from_spec(ca.clone(), &spec);
            b.version(3).generated_date(10);
            let krl = b.build();
            let mut again = from_spec(ca, &listing(&krl));
            again.version(3).generated_date(10);
            assert_eq!(again.build(), krl, "{spec}");
        }
    }
}
