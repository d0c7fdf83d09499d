//! The revocation spec format of `ssh-keygen -k`, read exactly as OpenSSH 9.2's
//! `update_krl_from_file` reads it, so one spec file gives the same KRL in both tools.
//!
//! One revocation per line; `#` starts a comment anywhere on a line; spaces and tabs around
//! a line are ignored; keywords are case-insensitive:
//!
//! | line | revokes |
//! | --- | --- |
//! | `serial: N`, `serial: N-M` | certificates of the `-s` CA with serial N (N..=M, M > N); numbers as C's `strtoull` base 0: decimal, `0x` hex, leading-`0` octal |
//! | `id: KEYID` | certificates of the `-s` CA with this key ID (the rest of the line) |
//! | `hash: SHA256:BASE64` | the plain key with this SHA-256 fingerprint |
//! | `key: KEY`, `sha1: KEY`, `sha256: KEY` | the plain key of a public key or certificate line: listed, by SHA-1, by SHA-256 |
//! | `KEY` (a bare public key line) | a plain key: listed; a certificate: its serial under its own CA, or its key ID if the serial is 0 |
//!
//! Where we are stricter than ssh-keygen, we refuse rather than revoke something else:
//! `strtoull` also takes a sign (`serial: -5` revokes serial 2^64-5 in ssh-keygen) and
//! whitespace after the `-` of a range; we refuse both. A NUL byte ends a line in
//! ssh-keygen; we refuse the line. A key ID containing a carriage return (a spec file with
//! Windows line endings) is refused, since ssh-keygen would revoke `"alice\r"` rather than
//! `alice`. `hash:` base64 may not contain spaces. One way we are looser: a certificate's
//! CA signature is not verified: a certificate line revokes a serial or key ID of the CA it
//! names, which the spec's author could as well write as a `serial:` or `id:` line.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use signoff_proto::krl::{self, CaScope, CertFields, Krl, KrlBuilder, RevokeError, SerialRange};
use ssh_encoding::{Decode as _, Encode as _, Reader as _};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, PublicKey};

/// The name ssh-keygen gives standard input in messages.
pub const STDIN_NAME: &str = "(standard input)";

/// Base64 as OpenSSH writes it: standard alphabet; padding optional, since fingerprints
/// omit it and key lines carry it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Algorithm names of OpenSSH certificates end with this.
const CERT_SUFFIX: &[u8] = b"-cert-v01@openssh.com";

/// A spec line that cannot be read, with where it is.
#[derive(Debug)]
pub struct SpecError {
    /// The spec file as named on the command line, or [`STDIN_NAME`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub kind: SpecErrorKind,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.kind)
    }
}

// Written by hand because the kind is part of this error's own message, while the kind's
// cause (if any) is the next link of the chain.
impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// What is wrong with a spec line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// A NUL byte before any `#`; ssh-keygen would silently cut the line there.
    #[error("line contains a NUL byte")]
    NulByte,
    /// `serial:` not followed by a number or `N-M`.
    #[error("invalid serial \"{text}\": expected a number or N-M range")]
    InvalidSerial {
        /// The text after `serial:`, escaped.
        text: String,
    },
    /// A serial above 2^64-1.
    #[error("serial \"{text}\" is out of range: the largest serial is {max}", max = u64::MAX)]
    SerialOutOfRange {
        /// The text after `serial:`, escaped.
        text: String,
    },
    /// Serial 0, alone or as the start of a range.
    #[error(
        "serial 0 cannot be revoked: OpenSSH never matches serial 0 \
         (revoke such a certificate by its key ID)"
    )]
    SerialZero,
    /// `serial: N-M` with M <= N (ssh-keygen's rule: a range holds two serials or more).
    #[error("invalid serial range {lo}-{hi}: the end must be above the start")]
    InvertedRange {
        /// N.
        lo: u64,
        /// M.
        hi: u64,
    },
    /// `serial:` or `id:` without `-s`.
    #[error(
        "revoking certificates by {what} needs a CA: pass -s CA.pub, or -s none for \
         certificates of any CA"
    )]
    CaRequired {
        /// `serial` or `key ID`.
        what: &'static str,
    },
    /// A key ID with a carriage return, which OpenSSH would match literally.
    #[error(
        "key ID \"{text}\" contains a carriage return; if the file has Windows (CRLF) line \
         endings, convert it (dos2unix)"
    )]
    CarriageReturnInKeyId {
        /// The key ID, escaped.
        text: String,
    },
    /// `hash:` with something other than `SHA256:`.
    #[error("unsupported hash algorithm in \"{text}\": expected SHA256:<base64>")]
    UnsupportedHash {
        /// The text after `hash:`, escaped.
        text: String,
    },
    /// `hash: SHA256:` followed by something that is not base64.
    #[error("invalid base64 in hash \"{text}\"")]
    HashBase64 {
        /// The text after `SHA256:`, escaped.
        text: String,
        /// Why it does not decode.
        #[source]
        source: base64::DecodeError,
    },
    /// `hash: SHA256:` followed by base64 of the wrong length.
    #[error("SHA256 hash of {got} bytes, expected 32")]
    HashLength {
        /// Decoded length.
        got: usize,
    },
    /// A `key:`, `sha1:`, `sha256:` or bare line that is not a public key or certificate.
    #[error("invalid public key or certificate")]
    BadKey(#[source] KeyLineError),
    /// The KRL builder refused the revocation.
    #[error(transparent)]
    Revoke(RevokeError),
}

/// Why a line is not an OpenSSH public key or certificate line (`TYPE BASE64 [COMMENT]`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLineError {
    /// Fewer than two words.
    #[error("expected a key type and a base64 key blob")]
    Incomplete,
    /// The second word is not base64.
    #[error("key blob is not valid base64")]
    Base64(#[source] base64::DecodeError),
    /// The blob is too short to hold its own type name.
    #[error("key blob is truncated")]
    Truncated,
    /// The type word and the type inside the blob differ.
    #[error("key type \"{line}\" does not match the type \"{blob}\" inside the key blob")]
    TypeMismatch {
        /// The first word of the line, escaped.
        line: String,
        /// The type name inside the blob, escaped.
        blob: String,
    },
    /// The blob does not decode as a key or certificate of its type.
    #[error("key blob does not parse")]
    Parse(#[source] ssh_key::Error),
    /// A certificate field is missing, cut short or (a key ID) contains NUL.
    #[error("certificate field \"{field}\" is malformed")]
    CertField {
        /// The field, as `PROTOCOL.certkeys` names it.
        field: &'static str,
    },
    /// Bytes after the certificate's signature.
    #[error("{bytes} unexpected bytes after the certificate")]
    CertTrailingData {
        /// How many.
        bytes: usize,
    },
}

/// A public key or certificate read from a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrCert {
    /// A plain public key.
    Key(KeyData),
    /// An OpenSSH certificate.
    Cert(CertInfo),
}

impl KeyOrCert {
    /// The plain key: the key itself, or the key a certificate certifies.
    pub fn plain_key(&self) -> &KeyData {
        match self {
            KeyOrCert::Key(k) => k,
            KeyOrCert::Cert(c) => &c.key,
        }
    }
}

/// The fields of an OpenSSH certificate that revocation looks at.
///
/// We read these ourselves rather than through `ssh_key::Certificate`, which (in 0.6)
/// refuses certificates valid forever (`valid_before` 2^64-1, what `ssh-keygen -s` writes
/// without `-V`) and key IDs that are not UTF-8; OpenSSH accepts both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certified plain key.
    pub key: KeyData,
    /// The serial; 0 means none.
    pub serial: u64,
    /// The key ID, raw bytes (never containing NUL: OpenSSH refuses such certificates).
    pub key_id: Vec<u8>,
    /// The CA key that signed it.
    pub ca: KeyData,
}

impl CertInfo {
    /// The fields the codec's revocation rules look at.
    pub fn fields(&self) -> CertFields<'_> {
        CertFields {
            key: &self.key,
            serial: self.serial,
            key_id: &self.key_id,
            ca: &self.ca,
        }
    }

    /// Revokes the certificate as `ssh-keygen -k` does for a bare certificate line: its
    /// serial under its CA, or its key ID when the serial is 0.
    pub fn revoke(&self, builder: &mut KrlBuilder) -> Result<(), RevokeError> {
        builder.revoke_certificate(&self.fields())?;
        Ok(())
    }

    /// Whether `krl` revokes this certificate, by the rules of OpenSSH's
    /// `ssh_krl_check_key`.
    pub fn is_revoked_by(&self, krl: &Krl) -> bool {
        krl.check_certificate(&self.fields()).is_some()
    }
}

/// A parsed `TYPE BASE64 [COMMENT]` line.
#[derive(Debug, Clone)]
pub struct KeyLine<'a> {
    /// The key or certificate.
    pub key: KeyOrCert,
    /// Everything after the blob and the blanks that follow it; may be empty.
    pub comment: &'a [u8],
}

/// Parses an OpenSSH public key or certificate line as `sshkey_read` does: a type word, a
/// base64 blob whose own type name must equal the word, then an optional comment. Words are
/// separated by spaces or tabs; `line` must not start with one. A certificate's CA
/// signature is not verified (OpenSSH does; see the module documentation).
pub fn parse_key_line(line: &[u8]) -> Result<KeyLine<'_>, KeyLineError> {
    let (type_word, rest) = split_word(line);
    let rest = trim_start(rest);
    let (blob_b64, rest) = split_word(rest);
    if type_word.is_empty() || blob_b64.is_empty() {
        return Err(KeyLineError::Incomplete);
    }
    let comment = trim_start(rest);
    let blob = BASE64.decode(blob_b64).map_err(KeyLineError::Base64)?;
    let blob_type = blob_type_name(&blob).ok_or(KeyLineError::Truncated)?;
    if blob_type != type_word {
        return Err(KeyLineError::TypeMismatch {
            line: escape(type_word),
            blob: escape(blob_type),
        });
    }
    let key = if type_word.ends_with(CERT_SUFFIX) {
        KeyOrCert::Cert(parse_certificate(&blob, type_word)?)
    } else {
        let key = PublicKey::from_bytes(&blob).map_err(KeyLineError::Parse)?;
        KeyOrCert::Key(key.key_data().clone())
    };
    Ok(KeyLine { key, comment })
}

/// Reads a certificate blob (`PROTOCOL.certkeys`) whose type name is `cert_type`.
///
/// Unlike OpenSSH, we do not verify the CA's signature (our ssh-key build has no signature
/// verification for every key type). For revocation that is harmless: a certificate line
/// revokes a serial or key ID of the CA it names, which the spec's author could as well
/// write as a `serial:` or `id:` line; and `krl check` only reports.
fn parse_certificate(blob: &[u8], cert_type: &[u8]) -> Result<CertInfo, KeyLineError> {
    let algorithm = std::str::from_utf8(cert_type)
        .map_err(|_| ssh_key::Error::AlgorithmUnknown)
        .and_then(Algorithm::new_certificate)
        .map_err(KeyLineError::Parse)?;
    let mut rest = blob;
    skip_string(&mut rest, "type")?;
    skip_string(&mut rest, "nonce")?;
    // The certified key's fields come next, laid out as in a plain key blob after its type
    // name: decode them as that blob to learn both the key and where they end.
    let plain_name = algorithm.as_str().as_bytes();
    let mut plain = Vec::with_capacity(4 + plain_name.len() + rest.len());
    plain_name
        .encode(&mut plain)
        .map_err(|_| KeyLineError::CertField { field: "type" })?;
    plain.extend_from_slice(rest);
    let mut rest = plain.as_slice();
    let key = KeyData::decode(&mut rest).map_err(KeyLineError::Parse)?;
    let serial = take_u64(&mut rest, "serial")?;
    u32::decode(&mut rest).map_err(|_| KeyLineError::CertField { field: "type" })?;
    let key_id = take_string(&mut rest, "key id")?;
    if key_id.contains(&0) {
        return Err(KeyLineError::CertField { field: "key id" });
    }
    skip_string(&mut rest, "valid principals")?;
    take_u64(&mut rest, "valid after")?;
    take_u64(&mut rest, "valid before")?;
    skip_string(&mut rest, "critical options")?;
    skip_string(&mut rest, "extensions")?;
    skip_string(&mut rest, "reserved")?;
    let ca_blob = take_string(&mut rest, "signature key")?;
    skip_string(&mut rest, "signature")?;
    if !rest.is_empty() {
        return Err(KeyLineError::CertTrailingData { bytes: rest.len() });
    }
    let ca = PublicKey::from_bytes(&ca_blob)
        .map_err(KeyLineError::Parse)?
        .key_data()
        .clone();
    Ok(CertInfo {
        key,
        serial,
        key_id,
        ca,
    })
}

// The certificate's fields are read with `ssh-encoding`, which also refuses a length prefix
// over 1 MiB (OpenSSH takes up to 128 MiB): such a line is refused, never misread.

fn take_u64(rest: &mut &[u8], field: &'static str) -> Result<u64, KeyLineError> {
    u64::decode(rest).map_err(|_| KeyLineError::CertField { field })
}

fn take_string(rest: &mut &[u8], field: &'static str) -> Result<Vec<u8>, KeyLineError> {
    Vec::<u8>::decode(rest).map_err(|_| KeyLineError::CertField { field })
}

fn skip_string(rest: &mut &[u8], field: &'static str) -> Result<(), KeyLineError> {
    rest.drain_prefixed()
        .map(drop)
        .map_err(|_| KeyLineError::CertField { field })
}

/// The algorithm name at the start of a key or certificate wire blob.
pub fn blob_type_name(blob: &[u8]) -> Option<&[u8]> {
    let mut rest = blob;
    let len = usize::decode(&mut rest).ok()?;
    rest.get(..len)
}

/// Reads spec files into a [`KrlBuilder`].
///
/// Serial lines for the `-s` CA are collected in one vector and handed to the builder in
/// bulk by [`SpecReader::finish`]: a spec of a million serials then costs a million pushes
/// and no allocation per line.
#[derive(Debug)]
pub struct SpecReader {
    ca: Option<CaScope>,
    builder: KrlBuilder,
    serials: Vec<SerialRange>,
}

impl SpecReader {
    /// A reader whose `serial:` and `id:` lines revoke certificates of `ca`
    /// ([`CaScope::Any`] for `-s none`), or are refused when `ca` is `None` (no `-s`).
    pub fn new(ca: Option<CaScope>) -> Self {
        SpecReader {
            ca,
            builder: KrlBuilder::new(),
            serials: Vec::new(),
        }
    }

    /// Reads one spec file's contents; `file` names it in errors.
    pub fn read(&mut self, file: &str, text: &[u8]) -> Result<(), SpecError> {
        if self.ca.is_some() {
            // At most one serial per line of at least `serial:1\n`; reserving the upper
            // bound costs address space only, and saves copying on growth.
            self.serials.reserve(text.len() / 9 + 1);
        }
        let mut rest = text;
        let mut line = 0;
        while !rest.is_empty() {
            line += 1;
            if self.ca.is_some()
                && let Some((range, len)) = plain_serial_line(rest)
            {
                self.push_serials(range);
                rest = &rest[len..];
                continue;
            }
            let (raw, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], &rest[end + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            if let Err(kind) = self.read_line(raw) {
                return Err(SpecError {
                    file: file.to_owned(),
                    line,
                    kind,
                });
            }
            rest = next;
        }
        Ok(())
    }

    /// Hands the collected serials to the builder and returns it.
    pub fn finish(mut self) -> Result<KrlBuilder, RevokeError> {
        if let Some(ca) = &self.ca
            && !self.serials.is_empty()
        {
            self.builder.revoke_serial_ranges(ca, self.serials)?;
        }
        Ok(self.builder)
    }

    /// Adds a range, merged into the previous one when it starts inside or right after it:
    /// a sorted spec of a million consecutive serials then stays one range, and the
    /// builder's sort has nothing to do. The set of serials is the same either way.
    fn push_serials(&mut self, range: SerialRange) {
        if let Some(last) = self.serials.last_mut()
            && range.lo >= last.lo
            && range.lo <= last.hi.saturating_add(1)
        {
            last.hi = last.hi.max(range.hi);
            return;
        }
        self.serials.push(range);
    }

    fn read_line(&mut self, raw: &[u8]) -> Result<(), SpecErrorKind> {
        let line = line_content(raw)?;
        if line.is_empty() {
            return Ok(());
        }
        if let Some(rest) = strip_keyword(line, b"serial:") {
            if self.ca.is_none() {
                return Err(SpecErrorKind::CaRequired { what: "serial" });
            }
            self.push_serials(parse_serials(rest)?);
        } else if let Some(id) = strip_keyword(line, b"id:") {
            let Some(ca) = &self.ca else {
                return Err(SpecErrorKind::CaRequired { what: "key ID" });
            };
            if id.contains(&b'\r') {
                return Err(SpecErrorKind::CarriageReturnInKeyId { text: escape(id) });
            }
            self.builder
                .revoke_key_id(ca, id)
                .map_err(SpecErrorKind::Revoke)?;
        } else if let Some(rest) = strip_keyword(line, b"hash:") {
            self.builder.revoke_sha256(parse_sha256(rest)?);
        } else if let Some(rest) = strip_keyword(line, b"key:") {
            let key = read_key(rest)?;
            self.builder.revoke_key(key.plain_key());
        } else if let Some(rest) = strip_keyword(line, b"sha1:") {
            let key = read_key(rest)?;
            self.builder.revoke_sha1(krl::sha1_of(key.plain_key()));
        } else if let Some(rest) = strip_keyword(line, b"sha256:") {
            let key = read_key(rest)?;
            self.builder.revoke_sha256(krl::sha256_of(key.plain_key()));
        } else {
            match read_key(line)? {
                KeyOrCert::Key(key) => {
                    self.builder.revoke_key(&key);
                }
                KeyOrCert::Cert(cert) => {
                    cert.revoke(&mut self.builder)
                        .map_err(SpecErrorKind::Revoke)?;
                }
            }
        }
        Ok(())
    }
}

fn read_key(text: &[u8]) -> Result<KeyOrCert, SpecErrorKind> {
    parse_key_line(text)
        .map(|line| line.key)
        .map_err(SpecErrorKind::BadKey)
}

/// The part of a raw line (without its `\n`) before any `#`, without surrounding blanks.
fn line_content(raw: &[u8]) -> Result<&[u8], SpecErrorKind> {
    let mut end = raw.len();
    for (i, &b) in raw.iter().enumerate() {
        if b == b'#' {
            end = i;
            break;
        }
        if b == 0 {
            return Err(SpecErrorKind::NulByte);
        }
    }
    Ok(trim(&raw[..end]))
}

/// `line` without a case-insensitive `keyword` prefix and the blanks after it.
fn strip_keyword<'a>(line: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| trim_start(&line[keyword.len()..]))
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading spaces and tabs.
pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_blank(b)).unwrap_or(s.len());
    &s[start..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let end = s.iter().rposition(|&b| !is_blank(b)).map_or(0, |i| i + 1);
    &s[..end]
}

/// Splits off the first word (up to a space or tab).
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| is_blank(b)).unwrap_or(s.len());
    s.split_at(end)
}

/// Escapes a byte string for an error message or a listing: printable ASCII as is,
/// everything else (and `"` and `\`) as Rust escapes.
pub(crate) fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The fast path for the shape of nearly every line of a large spec: `serial:`, blanks,
/// `N` or `N-M` in decimal of at most 19 digits without a leading zero, blanks, then `\n`
/// or the end of the text. Returns the range and the length of the line with its `\n`.
/// Anything else, including every invalid serial, returns `None` and goes through
/// [`SpecReader::read_line`], which decides exactly as for any other line.
fn plain_serial_line(s: &[u8]) -> Option<(SerialRange, usize)> {
    if !s.get(..7)?.eq_ignore_ascii_case(b"serial:") {
        return None;
    }
    let mut i = skip_blanks(s, 7);
    let (lo, end) = plain_decimal(s, i)?;
    i = end;
    let mut hi = lo;
    if s.get(i) == Some(&b'-') {
        let (h, end) = plain_decimal(s, i + 1)?;
        if h <= lo {
            return None;
        }
        hi = h;
        i = end;
    }
    i = skip_blanks(s, i);
    match s.get(i) {
        None => Some((SerialRange { lo, hi }, i)),
        Some(b'\n') => Some((SerialRange { lo, hi }, i + 1)),
        Some(_) => None,
    }
}

fn skip_blanks(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_blank(b)) {
        i += 1;
    }
    i
}

/// A decimal number at `s[start..]` starting with 1-9 (a leading 0 means octal, or the
/// invalid serial 0) of at most 19 digits (so it cannot overflow); its value and end.
fn plain_decimal(s: &[u8], start: usize) -> Option<(u64, usize)> {
    let mut value = match s.get(start) {
        Some(&b @ b'1'..=b'9') => u64::from(b - b'0'),
        _ => return None,
    };
    let mut i = start + 1;
    while let Some(&b @ b'0'..=b'9') = s.get(i) {
        if i - start == 19 {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
        i += 1;
    }
    Some((value, i))
}

/// Parses the text after `serial:`: `N` or `N-M`.
fn parse_serials(text: &[u8]) -> Result<SerialRange, SpecErrorKind> {
    let (lo_text, hi_text) = match text.iter().position(|&b| b == b'-') {
        Some(dash) => (&text[..dash], Some(&text[dash + 1..])),
        None => (text, None),
    };
    let number = |digits: &[u8]| {
        parse_c_u64(digits).map_err(|e| match e {
            NumberError::Invalid => SpecErrorKind::InvalidSerial { text: escape(text) },
            NumberError::Overflow => SpecErrorKind::SerialOutOfRange { text: escape(text) },
        })
    };
    let lo = number(lo_text)?;
    let hi = match hi_text {
        Some(hi_text) => {
            let hi = number(hi_text)?;
            if hi <= lo {
                return Err(SpecErrorKind::InvertedRange { lo, hi });
            }
            hi
        }
        None => lo,
    };
    if lo == 0 {
        return Err(SpecErrorKind::SerialZero);
    }
    Ok(SerialRange { lo, hi })
}

enum NumberError {
    Invalid,
    Overflow,
}

/// An unsigned number as C's `strtoull(s, &end, 0)` reads it when it must consume all of
/// `s`: `0x`/`0X` then hex, `0` then octal, else decimal; no sign, no blanks.
fn parse_c_u64(s: &[u8]) -> Result<u64, NumberError> {
    let (digits, radix) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
        [b'0', rest @ ..] if !rest.is_empty() => (rest, 8),
        _ => (s, 10),
    };
    if digits.is_empty() {
        return Err(NumberError::Invalid);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &b in digits {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(NumberError::Invalid),
        };
        if u64::from(digit) >= radix {
            return Err(NumberError::Invalid);
        }
        // Keep scanning after an overflow: a bad digit later makes the text invalid,
        // which is the error strtoull's caller in ssh-keygen reports first.
        match value
            .checked_mul(radix)
            .and_then(|v| v.checked_add(u64::from(digit)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumberError::Overflow)
    } else {
        Ok(value)
    }
}

/// Parses the text after `hash:`: `SHA256:` and base64 of 32 bytes, padded or not
/// (`signoff_core::fingerprint`).
fn parse_sha256(text: &[u8]) -> Result<[u8; 32], SpecErrorKind> {
    use signoff_core::fingerprint::{FingerprintError, Sha256Fingerprint};
    Sha256Fingerprint::parse_bytes(text)
        .map(|fp| fp.0)
        .map_err(|e| match e {
            FingerprintError::Base64(source) => SpecErrorKind::HashBase64 {
                text: escape(Sha256Fingerprint::base64_of(text)),
                source,
            },
            FingerprintError::Length(got) => SpecErrorKind::HashLength { got },
            _ => SpecErrorKind::UnsupportedHash { text: escape(text) },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krl_tool::test_keys::*;
    use signoff_proto::krl::Revocation;
    use ssh_key::Certificate;

    fn ca() -> CaScope {
        CaScope::key(&key(CA))
    }

    fn key(line: &str) -> KeyData {
        match parse_key_line(line.as_bytes()).unwrap().key {
            KeyOrCert::Key(k) => k,
            KeyOrCert::Cert(_) => panic!("not a plain key"),
        }
    }

    fn cert(line: &str) -> CertInfo {
        match parse_key_line(line.as_bytes()).unwrap().key {
            KeyOrCert::Cert(c) => c,
            KeyOrCert::Key(_) => panic!("not a certificate"),
        }
    }

    fn build(ca: Option<CaScope>, spec: &str) -> Krl {
        let mut reader = SpecReader::new(ca);
        reader.read("test.spec", spec.as_bytes()).unwrap();
        reader.finish().unwrap().build()
    }

    fn error(ca: Option<CaScope>, spec: &str) -> SpecError {
        let mut reader = SpecReader::new(ca);
        reader.read("test.spec", spec.as_bytes()).unwrap_err()
    }

    fn serials(krl: &Krl) -> Vec<(u64, u64)> {
        krl.certs()
            .flat_map(|(_, c)| c.serials().iter().map(|r| (r.lo, r.hi)))
            .collect()
    }

    fn key_ids(krl: &Krl) -> Vec<(CaScope, Vec<u8>)> {
        krl.certs()
            .flat_map(|(ca, c)| c.key_ids().iter().map(move |id| (ca.clone(), id.clone())))
            .collect()
    }

    // --- keywords ---

    #[test]
    fn serial_single() {
        let krl = build(Some(ca()), "serial: 42\n");
        assert_eq!(serials(&krl), [(42, 42)]);
        assert_eq!(krl.certs().next().unwrap().0, &ca());
        assert!(cert(ALICE_CERT_SERIAL_42).is_revoked_by(&krl));
    }

    #[test]
    fn serial_range() {
        let krl = build(Some(ca()), "serial: 10-20\n");
        assert_eq!(serials(&krl), [(10, 20)]);
    }

    #[test]
    fn serial_radixes_like_strtoull() {
        let krl = build(Some(ca()), "serial: 0x10\nserial: 010\nserial: 0X1f-0x20\n");
        assert_eq!(serials(&krl), [(8, 8), (16, 16), (31, 32)]);
    }

    #[test]
    fn serial_largest() {
        let krl = build(Some(ca()), "serial: 18446744073709551615\n");
        assert_eq!(serials(&krl), [(u64::MAX, u64::MAX)]);
    }

    #[test]
    fn serial_with_any_ca() {
        let krl = build(Some(CaScope::Any), "serial: 42\n");
        assert_eq!(krl.certs().next().unwrap().0, &CaScope::Any);
        assert!(cert(ALICE_CERT_SERIAL_42).is_revoked_by(&krl));
    }

    #[test]
    fn adjacent_and_overlapping_serials_merge_on_push() {
        let mut reader = SpecReader::new(Some(ca()));
        reader
            .read("a", b"serial: 1\nserial: 2\nserial: 3-10\nserial: 5\nserial: 11\nserial: 20\nserial: 15\nserial: 16\n")
            .unwrap();
        assert_eq!(
            reader.serials,
            [
                SerialRange { lo: 1, hi: 11 },
                SerialRange { lo: 20, hi: 20 },
                SerialRange { lo: 15, hi: 16 }
            ]
        );
        let krl = reader.finish().unwrap().build();
        assert_eq!(serials(&krl), [(1, 11), (15, 16), (20, 20)]);
    }

    #[test]
    fn serial_at_the_top_does_not_overflow_the_merge() {
        let krl = build(
            Some(ca()),
            "serial: 18446744073709551614-18446744073709551615\nserial: 18446744073709551615\nserial: 3\n",
        );
        assert_eq!(serials(&krl), [(3, 3), (u64::MAX - 1, u64::MAX)]);
    }

    #[test]
    fn serials_across_files_merge() {
        let mut reader = SpecReader::new(Some(ca()));
        reader.read("a", b"serial: 1\nserial: 3\n").unwrap();
        reader.read("b", b"serial: 2\n").unwrap();
        let krl = reader.finish().unwrap().build();
        assert_eq!(serials(&krl), [(1, 3)]);
    }

    #[test]
    fn key_id_is_rest_of_line() {
        let krl = build(Some(ca()), "id:   some id  with spaces  # comment\n");
        assert_eq!(key_ids(&krl), [(ca(), b"some id  with spaces".to_vec())]);
    }

    #[test]
    fn key_id_revokes_certificate() {
        let krl = build(Some(CaScope::Any), "id: alice\n");
        assert!(cert(ALICE_CERT_SERIAL_42).is_revoked_by(&krl));
    }

    #[test]
    fn key_id_may_be_empty_like_ssh_keygen() {
        let krl = build(Some(ca()), "id:\n");
        assert_eq!(key_ids(&krl), [(ca(), Vec::new())]);
    }

    #[test]
    fn key_id_keeps_non_utf8_bytes() {
        let mut reader = SpecReader::new(Some(ca()));
        reader.read("x", b"id: caf\xe9\n").unwrap();
        let krl = reader.finish().unwrap().build();
        assert_eq!(key_ids(&krl), [(ca(), b"caf\xe9".to_vec())]);
    }

    #[test]
    fn hash_sha256() {
        let fp = ALICE_SHA256_FP.strip_prefix("SHA256:").unwrap();
        for line in [
            format!("hash: SHA256:{fp}"),
            format!("hash: SHA256:{fp}="),
            format!("HASH:SHA256:{fp}"),
        ] {
            let krl = build(None, &line);
            assert_eq!(krl.sha256s(), [krl::sha256_of(&key(ALICE))], "{line}");
            assert_eq!(krl.check_key(&key(ALICE)), Some(Revocation::Sha256));
        }
    }

    #[test]
    fn key_keyword_lists_plain_key() {
        let krl = build(None, &format!("key: {ALICE}\n"));
        assert_eq!(krl.explicit_keys(), [krl::key_blob(&key(ALICE))]);
    }

    #[test]
    fn key_keyword_with_certificate_lists_its_plain_key() {
        let krl = build(None, &format!("KEY: {ALICE_CERT_SERIAL_42}\n"));
        assert_eq!(krl.explicit_keys(), [krl::key_blob(&key(ALICE))]);
        assert!(krl.certs().next().is_none());
    }

    #[test]
    fn sha1_keyword() {
        let krl = build(None, &format!("sha1: {ALICE}\n"));
        assert_eq!(krl.sha1s(), [krl::sha1_of(&key(ALICE))]);
        assert_eq!(krl.check_key(&key(ALICE)), Some(Revocation::Sha1));
    }

    #[test]
    fn sha256_keyword() {
        let krl = build(None, &format!("Sha256:\t{CAROL_ECDSA}\n"));
        assert_eq!(krl.sha256s(), [krl::sha256_of(&key(CAROL_ECDSA))]);
    }

    #[test]
    fn sha256_keyword_with_certificate_hashes_its_plain_key() {
        let krl = build(None, &format!("sha256: {ALICE_CERT_SERIAL_42}\n"));
        assert_eq!(krl.sha256s(), [krl::sha256_of(&key(ALICE))]);
    }

    #[test]
    fn bare_plain_key_is_listed() {
        let krl = build(None, &format!("{BOB}\n"));
        assert_eq!(krl.explicit_keys(), [krl::key_blob(&key(BOB))]);
    }

    #[test]
    fn bare_certificate_revokes_serial_under_its_own_ca() {
        // -s names another CA: a bare certificate still uses the CA that signed it.
        let krl = build(Some(CaScope::Any), &format!("{CAROL_CERT_SERIAL_7}\n"));
        let (scope, revs) = krl.certs().next().unwrap();
        assert_eq!(scope, &CaScope::key(&key(CA2)));
        assert_eq!(revs.serials(), [SerialRange { lo: 7, hi: 7 }]);
    }

    #[test]
    fn bare_certificate_with_serial_zero_revokes_key_id() {
        let krl = build(None, &format!("{BOB_CERT_SERIAL_0}\n"));
        assert_eq!(key_ids(&krl), [(ca(), b"bob-id".to_vec())]);
        assert!(cert(BOB_CERT_SERIAL_0).is_revoked_by(&krl));
    }

    #[test]
    fn comments_blanks_and_whitespace_are_skipped() {
        let spec = "# a comment\n\n   \t\n  serial: 5   # why\n\tserial:7\t\n# serial: 9\n";
        let krl = build(Some(ca()), spec);
        assert_eq!(serials(&krl), [(5, 5), (7, 7)]);
    }

    #[test]
    fn no_trailing_newline() {
        assert_eq!(serials(&build(Some(ca()), "serial: 5")), [(5, 5)]);
    }

    #[test]
    fn empty_spec_revokes_nothing() {
        assert!(build(None, "").is_empty());
    }

    // --- errors, one per rejection path ---

    fn assert_error(ca: Option<CaScope>, spec: &str, line: usize, message: &str) {
        let err = error(ca, spec);
        assert_eq!(err.line, line, "{err}");
        assert_eq!(err.to_string(), format!("test.spec:{line}: {message}"));
    }

    #[test]
    fn error_names_file_and_line() {
        assert_error(
            Some(ca()),
            "# header\nserial: 1\nserial: 12x\n",
            3,
            "invalid serial \"12x\": expected a number or N-M range",
        );
    }

    #[test]
    fn error_serial_zero() {
        assert_error(
            Some(ca()),
            "serial: 0",
            1,
            "serial 0 cannot be revoked: OpenSSH never matches serial 0 \
             (revoke such a certificate by its key ID)",
        );
    }

    #[test]
    fn error_serial_range_from_zero() {
        let err = error(Some(ca()), "serial: 0-5");
        assert!(matches!(err.kind, SpecErrorKind::SerialZero), "{err}");
    }

    #[test]
    fn error_range_end_equal_to_start() {
        assert_error(
            Some(ca()),
            "serial: 5-5",
            1,
            "invalid serial range 5-5: the end must be above the start",
        );
    }

    #[test]
    fn error_range_end_below_start() {
        let err = error(Some(ca()), "serial: 9-0x5");
        assert!(
            matches!(err.kind, SpecErrorKind::InvertedRange { lo: 9, hi: 5 }),
            "{err}"
        );
    }

    #[test]
    fn error_serial_garbage() {
        for text in [
            "", "x", "12x", "0x", "0xg", "08", "5-", "-5", "+5", "5- 6", "5 -6", "5--6", "1-2-3",
            "1.5", "12\r",
        ] {
            let err = error(Some(ca()), &format!("serial: {text}"));
            assert!(
                matches!(err.kind, SpecErrorKind::InvalidSerial { .. }),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn error_serial_overflow() {
        assert_error(
            Some(ca()),
            "serial: 18446744073709551616",
            1,
            "serial \"18446744073709551616\" is out of range: the largest serial is \
             18446744073709551615",
        );
        for text in ["0x10000000000000000", "1-99999999999999999999"] {
            let err = error(Some(ca()), &format!("serial: {text}"));
            assert!(
                matches!(err.kind, SpecErrorKind::SerialOutOfRange { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn error_serial_needs_ca() {
        assert_error(
            None,
            "serial: 5",
            1,
            "revoking certificates by serial needs a CA: pass -s CA.pub, or -s none for \
             certificates of any CA",
        );
    }

    #[test]
    fn error_key_id_needs_ca() {
        let err = error(None, "\nid: alice");
        assert_eq!(err.line, 2);
        assert!(
            matches!(err.kind, SpecErrorKind::CaRequired { what: "key ID" }),
            "{err}"
        );
    }

    #[test]
    fn error_key_id_with_carriage_return() {
        let err = error(Some(ca()), "id: alice\r\n");
        assert!(
            matches!(err.kind, SpecErrorKind::CarriageReturnInKeyId { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(r#""alice\r""#), "{err}");
    }

    #[test]
    fn error_nul_byte() {
        let err = error(Some(ca()), "id: al\0ice\n");
        assert!(matches!(err.kind, SpecErrorKind::NulByte), "{err}");
        // After the comment sign it does not matter.
        build(Some(ca()), "id: alice # \0\n");
    }

    #[test]
    fn error_bad_hash_algorithm() {
        for text in [
            "hash: SHA1:abc",
            "hash: sha256:abc",
            "hash: MD5:aa:bb",
            "hash:",
        ] {
            let err = error(None, text);
            assert!(
                matches!(err.kind, SpecErrorKind::UnsupportedHash { .. }),
                "{text}: {err}"
            );
        }
        assert_error(
            None,
            "hash: SHA1:abc",
            1,
            "unsupported hash algorithm in \"SHA1:abc\": expected SHA256:<base64>",
        );
    }

    #[test]
    fn error_bad_hash_base64() {
        for text in [
            "ab!c",
            "a",
            "ab cd",
            "Wr9LEMv+xmJfKaVyrnq+NmkP1JdAsJMgbB+qoxdeaq9",
        ] {
            let err = error(None, &format!("hash: SHA256:{text}"));
            assert!(
                matches!(err.kind, SpecErrorKind::HashBase64 { .. }),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn error_wrong_hash_length() {
        assert_error(
            None,
            "hash: SHA256:abc",
            1,
            "SHA256 hash of 2 bytes, expected 32",
        );
        // A SHA-1-sized hash given as SHA256.
        let err = error(None, "hash: SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert!(
            matches!(err.kind, SpecErrorKind::HashLength { got: 20 }),
            "{err}"
        );
    }

    #[test]
    fn error_bad_key() {
        type Check = fn(&KeyLineError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("garbage", |e| matches!(e, KeyLineError::Incomplete)),
            ("key: ssh-ed25519", |e| {
                matches!(e, KeyLineError::Incomplete)
            }),
            ("ssh-ed25519 !!!!", |e| matches!(e, KeyLineError::Base64(_))),
            ("sha1: ssh-ed25519 AAAA", |e| {
                matches!(e, KeyLineError::Truncated)
            }),
            // Type word of another algorithm than the blob's.
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJMgUcMLIzt9gjYWqxPv2eHwojxu/gWA+3kN/wYH6yof",
                |e| matches!(e, KeyLineError::TypeMismatch { .. }),
            ),
            // Blob cut short inside the key.
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJMgUcMLIzt9", |e| {
                matches!(e, KeyLineError::Parse(_))
            }),
        ];
        for (line, check) in cases {
            let err = error(None, line);
            match &err.kind {
                SpecErrorKind::BadKey(e) => assert!(check(e), "{line}: {e:?}"),
                other => panic!("{line}: {other:?}"),
            }
            assert!(
                err.to_string()
                    .starts_with("test.spec:1: invalid public key or certificate"),
                "{err}"
            );
            // The cause is the next link in the chain.
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    // --- key lines ---

    #[test]
    fn key_line_comment() {
        let line = parse_key_line(ALICE.as_bytes()).unwrap();
        assert_eq!(line.comment, b"alice@example.com");
        let text = format!("{}\t  with  spaces ", &ALICE[..ALICE.rfind(' ').unwrap()]);
        let line = parse_key_line(text.as_bytes()).unwrap();
        assert_eq!(line.comment, b"with  spaces ");
    }

    #[test]
    fn key_line_without_comment() {
        let text = &ALICE[..ALICE.rfind(' ').unwrap()];
        assert_eq!(parse_key_line(text.as_bytes()).unwrap().comment, b"");
    }

    #[test]
    fn key_line_ecdsa() {
        assert!(matches!(
            parse_key_line(CAROL_ECDSA.as_bytes()).unwrap().key,
            KeyOrCert::Key(_)
        ));
        assert!(matches!(
            parse_key_line(CAROL_CERT_SERIAL_7.as_bytes()).unwrap().key,
            KeyOrCert::Cert(_)
        ));
    }

    #[test]
    fn certificate_valid_forever_parses() {
        // ssh_key::Certificate refuses this one (valid_before = 2^64-1).
        let c = cert(ALICE_CERT_SERIAL_42);
        assert_eq!(c.serial, 42);
        assert_eq!(c.key_id, b"alice");
        assert_eq!(c.key, key(ALICE));
        assert_eq!(c.ca, key(CA));
    }

    #[test]
    fn certificate_with_non_utf8_key_id() {
        let krl = build(None, ALICE_CERT_NON_UTF8_ID);
        assert_eq!(key_ids(&krl), [(ca(), b"caf\xe9".to_vec())]);
        assert!(cert(ALICE_CERT_NON_UTF8_ID).is_revoked_by(&krl));
        assert!(!cert(ALICE_CERT_SERIAL_42).is_revoked_by(&krl));
    }

    #[test]
    fn certificate_check_agrees_with_codec() {
        // The one fixture ssh_key::Certificate can parse: compare our check with
        // Krl::check_certificate over every way of revoking it, and some misses.
        let ours = cert(DAVE_CERT_SERIAL_5_BOUNDED);
        let theirs = Certificate::from_openssh(DAVE_CERT_SERIAL_5_BOUNDED).unwrap();
        let cases: Vec<(Option<CaScope>, String)> = vec![
            (Some(ca()), "serial: 5".into()),
            (Some(ca()), "serial: 4-6".into()),
            (Some(ca()), "serial: 6-9".into()),
            (Some(CaScope::Any), "serial: 5".into()),
            (Some(CaScope::key(&key(CA2))), "serial: 5".into()),
            (Some(ca()), "id: dave".into()),
            (Some(CaScope::Any), "id: dave".into()),
            (Some(ca()), "id: Dave".into()),
            (None, format!("key: {CA}")),
            (None, format!("sha256: {CA}")),
            (None, format!("sha1: {DAVE_CERT_SERIAL_5_BOUNDED}")),
            (None, format!("key: {DAVE_CERT_SERIAL_5_BOUNDED}")),
            (None, format!("key: {ALICE}")),
            (None, DAVE_CERT_SERIAL_5_BOUNDED.into()),
            (None, String::new()),
        ];
        let theirs = CertFields::of(&theirs);
        let fields = ours.fields();
        assert_eq!(
            (fields.key, fields.serial, fields.key_id, fields.ca),
            (theirs.key, theirs.serial, theirs.key_id, theirs.ca)
        );
        for (ca, spec) in cases {
            let krl = build(ca, &spec);
            assert_eq!(
                ours.is_revoked_by(&krl),
                krl.check_certificate(&theirs).is_some(),
                "{spec}"
            );
        }
    }

    /// A certificate line with its blob changed by `edit`.
    fn edited_cert(line: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut words = line.split(' ');
        let kind = words.next().unwrap();
        let mut blob = BASE64.decode(words.next().unwrap()).unwrap();
        edit(&mut blob);
        format!(
            "{kind} {}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    #[test]
    fn error_certificate_key_id_with_nul() {
        let line = edited_cert(DAVE_CERT_SERIAL_5_BOUNDED, |blob| {
            let at = blob.windows(4).position(|w| w == b"dave").unwrap();
            blob[at + 2] = 0;
        });
        let err = error(None, &line);
        assert!(
            matches!(
                err.kind,
                SpecErrorKind::BadKey(KeyLineError::CertField { field: "key id" })
            ),
            "{err}"
        );
    }

    #[test]
    fn error_certificate_truncated() {
        let line = edited_cert(DAVE_CERT_SERIAL_5_BOUNDED, |blob| blob.truncate(150));
        let err = error(None, &line);
        assert!(
            matches!(
                err.kind,
                SpecErrorKind::BadKey(KeyLineError::CertField { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn error_certificate_trailing_data() {
        let line = edited_cert(DAVE_CERT_SERIAL_5_BOUNDED, |blob| blob.push(0));
        let err = error(None, &line);
        assert!(
            matches!(
                err.kind,
                SpecErrorKind::BadKey(KeyLineError::CertTrailingData { bytes: 1 })
            ),
            "{err}"
        );
    }

    #[test]
    fn plain_serial_line_edges() {
        let fast = |s: &str| plain_serial_line(s.as_bytes()).map(|(r, n)| (r.lo, r.hi, n));
        assert_eq!(fast("serial: 5\nx"), Some((5, 5, 10)));
        assert_eq!(fast("SERIAL:5-6"), Some((5, 6, 10)));
        assert_eq!(
            fast("serial:\t 9999999999999999999 \n"),
            Some((9_999_999_999_999_999_999, 9_999_999_999_999_999_999, 30))
        );
        // Left to the general path:
        for s in [
            "serial: 10000000000000000000", // 20 digits
            "serial: 0",
            "serial: 05",
            "serial: 0x5",
            "serial: 5 # c",
            "serial: 5-5",
            "serial: 5\r\n",
            " serial: 5",
            "serial: 5x",
            "serial:",
        ] {
            assert_eq!(fast(s), None, "{s:?}");
        }
    }

    #[test]
    fn fast_path_keeps_line_numbers() {
        let err = error(Some(ca()), "serial: 1\nserial: 2\n\nserial: 3-x\n");
        assert_eq!(err.line, 4);
    }

    proptest::proptest! {
        /// Lines near the fast path's shape give the same result through the fast path as
        /// through the general one.
        #[test]
        fn fast_path_agrees_with_general_path(
            keyword in "(serial|SERIAL|Serial|id):",
            blanks1 in "[ \t]{0,2}",
            lo in "[0-9]{1,21}|0x[0-9a-f]{1,3}",
            hi in proptest::option::of("[0-9]{1,21}"),
            blanks2 in "[ \t]{0,2}",
            tail in "|\n|x|#c|\r",
        ) {
            let mut line = format!("{keyword}{blanks1}{lo}");
            if let Some(hi) = hi {
                line.push('-');
                line.push_str(&hi);
            }
            line.push_str(&blanks2);
            line.push_str(&tail);
            let fast = plain_serial_line(line.as_bytes());
            let mut general = SpecReader::new(Some(CaScope::Any));
            let raw = line.strip_suffix('\n').unwrap_or(&line);
            let result = general.read_line(raw.as_bytes());
            if let Some((range, len)) = fast {
                proptest::prop_assert!(result.is_ok(), "{line:?}: {result:?}");
                proptest::prop_assert_eq!(&general.serials, &vec![range]);
                proptest::prop_assert_eq!(len, line.len());
            }
        }
    }

    #[test]
    fn parse_c_u64_matches_strtoull() {
        let ok = |s: &str| parse_c_u64(s.as_bytes()).ok();
        assert_eq!(ok("0"), Some(0));
        assert_eq!(ok("00"), Some(0));
        assert_eq!(ok("017"), Some(15));
        assert_eq!(ok("0xfF"), Some(255));
        assert_eq!(ok("123"), Some(123));
        assert_eq!(ok("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(ok("01777777777777777777777"), Some(u64::MAX));
        assert!(matches!(
            parse_c_u64(b"02000000000000000000000"),
            Err(NumberError::Overflow)
        ));
        assert!(matches!(
            parse_c_u64(b"99999999999999999999x"),
            Err(NumberError::Invalid)
        ));
        assert_eq!(ok("9a"), None);
        assert_eq!(ok("0x"), None);
        assert_eq!(ok("089"), None);
    }
}
