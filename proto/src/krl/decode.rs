//! KRL decoder, as strict as OpenSSH's `ssh_krl_from_blob` and safe on hostile input: every
//! length is checked against the bytes present, and memory grows only with the input.

use super::serials::SerialRange;
use super::wire::Reader;
use super::{
    CERT_EXTENSION, CERT_KEY_ID, CERT_SERIAL_BITMAP, CERT_SERIAL_LIST, CERT_SERIAL_RANGE, CaScope,
    FORMAT_VERSION, Krl, KrlBuilder, MAGIC, MAX_BITMAP_SPAN, SECTION_CERTIFICATES,
    SECTION_EXPLICIT_KEY, SECTION_EXTENSION, SECTION_FINGERPRINT_SHA1, SECTION_FINGERPRINT_SHA256,
    SECTION_SIGNATURE,
};

/// A KRL that cannot be loaded, with the byte offset where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset from the start of the file.
    pub offset: usize,
    /// What is wrong there.
    pub kind: DecodeErrorKind,
}

/// What makes a KRL unloadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The file does not start with `SSHKRL\n\0`.
    #[error("not a KRL (bad magic)")]
    BadMagic,
    /// A format version other than 1.
    #[error("unsupported KRL format version {0}")]
    UnsupportedFormatVersion(u32),
    /// The data ends inside a field.
    #[error("truncated {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A section or field has bytes left over after its contents.
    #[error("{bytes} unexpected bytes after {what}")]
    TrailingData {
        /// The structure that should have ended.
        what: &'static str,
        /// How many bytes are left over.
        bytes: usize,
    },
    /// A string that OpenSSH reads as a C string contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    NulInString {
        /// The field.
        what: &'static str,
    },
    /// A top-level section type that no KRL version defines.
    #[error("unknown section type {0}")]
    UnknownSection(u8),
    /// A certificate subsection type that no KRL version defines.
    #[error("unknown certificate subsection type {0:#04x}")]
    UnknownCertSubsection(u8),
    /// A non-signature section after a signature section.
    #[error("section type {0} after a signature section (signatures must come last)")]
    SectionAfterSignature(u8),
    /// The CA key of a certificates section does not parse.
    #[error("CA key does not parse: {0}")]
    BadCaKey(String),
    /// Serial 0, which OpenSSH refuses to revoke by serial.
    #[error("serial 0 cannot be revoked by serial")]
    SerialZero,
    /// A serial range whose start is above its end.
    #[error("serial range {lo}-{hi} has its start above its end")]
    InvertedRange {
        /// Range start.
        lo: u64,
        /// Range end.
        hi: u64,
    },
    /// A serial bitmap whose mpint has its sign bit set.
    #[error("serial bitmap is a negative mpint")]
    NegativeBitmap,
    /// A serial bitmap longer than OpenSSH's 2048-byte mpint limit.
    #[error("serial bitmap of {bytes} bytes exceeds OpenSSH's 2048-byte limit")]
    BitmapTooLarge {
        /// Length of the mpint as stored.
        bytes: usize,
    },
    /// A serial bitmap reaching past serial 2^64-1.
    #[error("serial bitmap runs past the largest serial")]
    BitmapWraps,
    /// A hash of the wrong length in a fingerprint section.
    #[error("{algorithm} hash of {got} bytes, expected {expected}")]
    BadHashLength {
        /// `SHA1` or `SHA256`.
        algorithm: &'static str,
        /// The length the algorithm gives.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// Hashes not in ascending order, as `PROTOCOL.krl` requires.
    #[error("{algorithm} hashes are not in ascending order")]
    UnsortedHashes {
        /// `SHA1` or `SHA256`.
        algorithm: &'static str,
    },
    /// A critical extension this implementation does not know.
    #[error("unsupported critical extension {0:?}")]
    CriticalExtension(String),
}

use DecodeErrorKind as K;

pub(super) fn decode(bytes: &[u8]) -> Result<Krl, DecodeError> {
    let mut r = Reader::new(bytes);
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(r.error(K::BadMagic));
    }
    r.bytes(MAGIC.len(), "magic")?;
    let format_at = r.clone();
    let format = r.u32("format version")?;
    if format != FORMAT_VERSION {
        return Err(format_at.error(K::UnsupportedFormatVersion(format)));
    }
    let mut b = KrlBuilder::new();
    b.version(r.u64("KRL version")?);
    b.generated_date(r.u64("generated date")?);
    r.u64("flags")?;
    r.string("reserved header field")?;
    b.comment = r.cstring("comment")?.to_vec();

    let mut seen_signature = false;
    while !r.is_empty() {
        let type_at = r.clone();
        let kind = r.u8("section type")?;
        if seen_signature && kind != SECTION_SIGNATURE {
            return Err(type_at.error(K::SectionAfterSignature(kind)));
        }
        let mut sect = r.sub("section")?;
        match kind {
            SECTION_CERTIFICATES => certificates(&mut sect, &mut b)?,
            SECTION_EXPLICIT_KEY => {
                while !sect.is_empty() {
                    b.explicit_keys.push(sect.string("explicit key")?.to_vec());
                }
            }
            SECTION_FINGERPRINT_SHA1 => {
                hashes::<20>(&mut sect, "SHA1", &mut b.sha1)?;
            }
            SECTION_FINGERPRINT_SHA256 => {
                hashes::<32>(&mut sect, "SHA256", &mut b.sha256)?;
            }
            SECTION_EXTENSION => extension(&mut sect)?,
            SECTION_SIGNATURE => {
                // Signing key, then the signature as a second string. OpenSSH no longer
                // supports KRL signatures; we skip them and never write them.
                seen_signature = true;
                r.string("signature")?;
                continue;
            }
            other => return Err(type_at.error(K::UnknownSection(other))),
        }
        sect.finish("section")?;
    }
    Ok(b.build())
}

fn certificates(s: &mut Reader<'_>, b: &mut KrlBuilder) -> Result<(), DecodeError> {
    let ca_at = s.offset();
    let ca_blob = s.string("CA key")?;
    let ca = CaScope::from_blob(ca_blob).map_err(|e| DecodeError {
        offset: ca_at,
        kind: K::BadCaKey(e.to_string()),
    })?;
    s.string("reserved certificates field")?;

    while !s.is_empty() {
        let type_at = s.clone();
        let kind = s.u8("certificate subsection type")?;
        let mut sub = s.sub("certificate subsection")?;
        match kind {
            CERT_SERIAL_LIST => {
                let mut ranges = Vec::with_capacity(sub.remaining() / 8);
                while !sub.is_empty() {
                    let at = sub.clone();
                    let serial = sub.u64("serial")?;
                    if serial == 0 {
                        return Err(at.error(K::SerialZero));
                    }
                    ranges.push(SerialRange {
                        lo: serial,
                        hi: serial,
                    });
                }
                b.add_serials(&ca, ranges);
            }
            CERT_SERIAL_RANGE => {
                let at = sub.clone();
                let lo = sub.u64("serial range start")?;
                let hi = sub.u64("serial range end")?;
                if lo == 0 {
                    return Err(at.error(K::SerialZero));
                }
                if lo > hi {
                    return Err(at.error(K::InvertedRange { lo, hi }));
                }
                b.add_serials(&ca, [SerialRange { lo, hi }]);
            }
            CERT_SERIAL_BITMAP => {
                let mut ranges = Vec::new();
                bitmap(&mut sub, &mut ranges)?;
                b.add_serials(&ca, ranges);
            }
            CERT_KEY_ID => {
                while !sub.is_empty() {
                    let id = sub.cstring("key ID")?;
                    // A C string has no NUL, so this cannot fail.
                    let _ = b.revoke_key_id(&ca, id);
                }
            }
            CERT_EXTENSION => extension(&mut sub)?,
            other => return Err(type_at.error(K::UnknownCertSubsection(other))),
        }
        sub.finish("certificate subsection")?;
    }
    Ok(())
}

/// `uint64 offset; mpint bitmap`: bit N revokes serial offset+N.
fn bitmap(s: &mut Reader<'_>, out: &mut Vec<SerialRange>) -> Result<(), DecodeError> {
    let offset = s.u64("bitmap offset")?;
    let at = s.clone();
    let mpint = s.string("bitmap")?;
    if mpint.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(at.error(K::NegativeBitmap));
    }
    // As sshbuf_get_bignum2_bytes_direct: at most 2048 bytes, plus one leading zero.
    let cap = (MAX_BITMAP_SPAN / 8) as usize;
    if mpint.len() > cap + 1 || (mpint.len() == cap + 1 && mpint[0] != 0) {
        return Err(at.error(K::BitmapTooLarge { bytes: mpint.len() }));
    }
    let significant = mpint.iter().position(|&b| b != 0).unwrap_or(mpint.len());
    let mpint = &mpint[significant..];

    // Walk bits from least significant upwards, turning runs of set bits into ranges.
    let mut run_start: Option<u64> = None;
    let nbits = mpint.len() as u64 * 8;
    for n in 0..=nbits {
        let set = n < nbits && {
            let byte = mpint[mpint.len() - 1 - (n / 8) as usize];
            byte & (1 << (n % 8)) != 0
        };
        match (set, run_start) {
            (true, None) => run_start = Some(n),
            (false, Some(first)) => {
                let lo = offset
                    .checked_add(first)
                    .ok_or_else(|| at.error(K::BitmapWraps))?;
                let hi = offset
                    .checked_add(n - 1)
                    .ok_or_else(|| at.error(K::BitmapWraps))?;
                if lo == 0 {
                    return Err(at.error(K::SerialZero));
                }
                out.push(SerialRange { lo, hi });
                run_start = None;
            }
            _ => {}
        }
    }
    Ok(())
}

fn hashes<const N: usize>(
    s: &mut Reader<'_>,
    algorithm: &'static str,
    out: &mut Vec<[u8; N]>,
) -> Result<(), DecodeError> {
    let mut previous: Option<[u8; N]> = None;
    while !s.is_empty() {
        let at = s.clone();
        let h = s.string("hash")?;
        let h: [u8; N] = h.try_into().map_err(|_| {
            at.error(K::BadHashLength {
                algorithm,
                expected: N,
                got: h.len(),
            })
        })?;
        if previous.is_some_and(|p| h < p) {
            return Err(at.error(K::UnsortedHashes { algorithm }));
        }
        previous = Some(h);
        out.push(h);
    }
    Ok(())
}

/// `string name; boolean critical; string contents`. No extension is defined yet, so a
/// critical one is an error and any other is ignored.
fn extension(s: &mut Reader<'_>) -> Result<(), DecodeError> {
    let at = s.clone();
    let name = s.cstring("extension name")?;
    let critical = s.u8("extension critical flag")? != 0;
    s.string("extension contents")?;
    if critical {
        return Err(at.error(K::CriticalExtension(
            String::from_utf8_lossy(name).into_owned(),
        )));
    }
    Ok(())
}
