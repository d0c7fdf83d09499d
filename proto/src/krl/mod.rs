//! OpenSSH key revocation lists, as specified in `PROTOCOL.krl` of openssh-portable.
//!
//! A [`KrlBuilder`] collects revocations in any order; [`KrlBuilder::build`] sorts and merges
//! them into a [`Krl`], whose [`Krl::encode`] is deterministic (the same set always gives the
//! same bytes) and never writes a KRL that sshd refuses to load. [`Krl::decode`] reads any
//! KRL that OpenSSH reads and is as strict as OpenSSH's own parser.
//!
//! sshd treats an unloadable `RevokedKeys` file as "every key is revoked", so the one thing
//! the encoder must never do is emit a serial bitmap larger than the parser's limit (2048
//! bytes of mpint, top bit index 16,383). `ssh-keygen -k` does, for some inputs; we do not.

mod decode;
mod encode;
mod serials;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use sha1::Digest as _;
use ssh_key::Certificate;
use ssh_key::public::KeyData;

pub use decode::{DecodeError, DecodeErrorKind};
pub use serials::SerialRange;

/// `"SSHKRL\n\0"`, the first eight bytes of every KRL.
pub const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
/// The only KRL format version that exists.
pub const FORMAT_VERSION: u32 = 1;

/// Largest number of serials one bitmap subsection may span: the parser refuses an mpint
/// longer than 2048 bytes, so the top bit index may be at most 16,383.
pub const MAX_BITMAP_SPAN: u64 = 16_384;

pub(crate) const SECTION_CERTIFICATES: u8 = 1;
pub(crate) const SECTION_EXPLICIT_KEY: u8 = 2;
pub(crate) const SECTION_FINGERPRINT_SHA1: u8 = 3;
pub(crate) const SECTION_SIGNATURE: u8 = 4;
pub(crate) const SECTION_FINGERPRINT_SHA256: u8 = 5;
pub(crate) const SECTION_EXTENSION: u8 = 255;

pub(crate) const CERT_SERIAL_LIST: u8 = 0x20;
pub(crate) const CERT_SERIAL_RANGE: u8 = 0x21;
pub(crate) const CERT_SERIAL_BITMAP: u8 = 0x22;
pub(crate) const CERT_KEY_ID: u8 = 0x23;
pub(crate) const CERT_EXTENSION: u8 = 0x39;

/// Which certificates a certificates section applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaScope {
    /// Certificates signed by any CA (an empty CA key on the wire).
    Any,
    /// Certificates signed by this CA; the key's wire blob in canonical form.
    Key(Vec<u8>),
}

impl CaScope {
    /// The scope of certificates signed by `ca`.
    pub fn key(ca: &KeyData) -> Self {
        CaScope::Key(key_blob(ca))
    }

    /// Parses a CA key blob as found in a KRL, re-encoding it canonically so that two
    /// encodings of one key name one scope.
    pub fn from_blob(blob: &[u8]) -> Result<Self, ssh_key::Error> {
        if blob.is_empty() {
            return Ok(CaScope::Any);
        }
        let key = ssh_key::PublicKey::from_bytes(blob)?;
        Ok(CaScope::key(key.key_data()))
    }

    /// The CA key, or `None` for [`CaScope::Any`].
    pub fn key_data(&self) -> Option<KeyData> {
        match self {
            CaScope::Any => None,
            CaScope::Key(blob) => ssh_key::PublicKey::from_bytes(blob)
                .ok()
                .map(|k| k.key_data().clone()),
        }
    }

    fn wire_blob(&self) -> &[u8] {
        match self {
            CaScope::Any => &[],
            CaScope::Key(blob) => blob,
        }
    }
}

/// The wire blob of a plain public key (what KRL explicit-key sections and fingerprints use).
pub fn key_blob(key: &KeyData) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for a key that was decoded or constructed by ssh-key.
    let _ = ssh_encoding::Encode::encode(key, &mut out);
    out
}

/// SHA-1 of a key's wire blob, as in a `FINGERPRINT_SHA1` section.
pub fn sha1_of(key: &KeyData) -> [u8; 20] {
    sha1::Sha1::digest(key_blob(key)).into()
}

/// SHA-256 of a key's wire blob, as in a `FINGERPRINT_SHA256` section.
pub fn sha256_of(key: &KeyData) -> [u8; 32] {
    sha2::Sha256::digest(key_blob(key)).into()
}

/// An error in a revocation handed to [`KrlBuilder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// Serial 0 means "no serial" in OpenSSH and can never be revoked by serial; revoke
    /// such certificates by key ID.
    #[error("serial 0 cannot be revoked by serial (OpenSSH never matches it); revoke the key ID")]
    SerialZero,
    /// A range whose start is above its end.
    #[error("serial range {lo}-{hi} is empty: the first serial is above the last")]
    EmptyRange {
        /// First serial of the range.
        lo: u64,
        /// Last serial of the range.
        hi: u64,
    },
    /// Key IDs are C strings in OpenSSH.
    #[error("key ID contains a NUL byte")]
    NulInKeyId,
}

/// Revocations for the certificates of one [`CaScope`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertRevocations {
    serials: Vec<SerialRange>,
    key_ids: Vec<Vec<u8>>,
}

impl CertRevocations {
    /// Revoked serials, as sorted, disjoint, non-adjacent ranges.
    pub fn serials(&self) -> &[SerialRange] {
        &self.serials
    }

    /// Revoked key IDs, sorted bytewise (as OpenSSH's `strcmp`).
    pub fn key_ids(&self) -> &[Vec<u8>] {
        &self.key_ids
    }

    fn is_empty(&self) -> bool {
        self.serials.is_empty() && self.key_ids.is_empty()
    }

    fn revokes(&self, serial: u64, key_id: &[u8]) -> Option<Revocation> {
        if self
            .key_ids
            .binary_search_by(|k| k.as_slice().cmp(key_id))
            .is_ok()
        {
            return Some(Revocation::KeyId);
        }
        if serial != 0 && serials::contains(&self.serials, serial) {
            return Some(Revocation::Serial);
        }
        None
    }
}

/// Why a key or certificate is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// The plain key's SHA-1 is listed.
    Sha1,
    /// The plain key's SHA-256 is listed.
    Sha256,
    /// The plain key is listed.
    ExplicitKey,
    /// The certificate's key ID is revoked for its CA or for any CA.
    KeyId,
    /// The certificate's serial is revoked for its CA or for any CA.
    Serial,
    /// The certificate's CA key itself is revoked.
    CaKey,
}

/// The fields of an OpenSSH certificate that revocation looks at. Taken apart rather than
/// as an `ssh_key::Certificate`, which (in ssh-key 0.6) refuses certificates valid forever
/// and key IDs that are not UTF-8, both of which OpenSSH accepts.
#[derive(Debug, Clone, Copy)]
pub struct CertFields<'a> {
    /// The certified plain key.
    pub key: &'a KeyData,
    /// The serial; 0 means none.
    pub serial: u64,
    /// The key ID, raw bytes.
    pub key_id: &'a [u8],
    /// The CA key that signed it.
    pub ca: &'a KeyData,
}

impl<'a> CertFields<'a> {
    /// The fields of a certificate ssh-key could parse.
    pub fn of(cert: &'a Certificate) -> Self {
        CertFields {
            key: cert.public_key(),
            serial: cert.serial(),
            key_id: cert.key_id().as_bytes(),
            ca: cert.signature_key(),
        }
    }
}

/// Collects revocations in any order; [`KrlBuilder::build`] normalizes them.
#[derive(Debug, Clone, Default)]
pub struct KrlBuilder {
    version: u64,
    generated_date: u64,
    comment: Vec<u8>,
    serials: BTreeMap<CaScope, serials::Pending>,
    key_ids: BTreeMap<CaScope, Vec<Vec<u8>>>,
    explicit_keys: Vec<Vec<u8>>,
    sha1: Vec<[u8; 20]>,
    sha256: Vec<[u8; 32]>,
}

impl KrlBuilder {
    /// An empty builder: version 0, date 0, no comment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `krl_version`, the number that increases each time the KRL changes.
    pub fn version(&mut self, version: u64) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets `generated_date`, seconds since the Unix epoch.
    pub fn generated_date(&mut self, secs: u64) -> &mut Self {
        self.generated_date = secs;
        self
    }

    /// Sets the free-text comment. OpenSSH reads it as a C string, so NUL bytes are dropped.
    pub fn comment(&mut self, comment: &[u8]) -> &mut Self {
        self.comment = comment.iter().copied().filter(|&b| b != 0).collect();
        self
    }

    /// Revokes one serial of certificates in `ca`.
    pub fn revoke_serial(&mut self, ca: &CaScope, serial: u64) -> Result<&mut Self, RevokeError> {
        self.revoke_serial_range(ca, serial, serial)
    }

    /// Revokes serials `lo..=hi` of certificates in `ca`.
    pub fn revoke_serial_range(
        &mut self,
        ca: &CaScope,
        lo: u64,
        hi: u64,
    ) -> Result<&mut Self, RevokeError> {
        if lo == 0 {
            return Err(RevokeError::SerialZero);
        }
        if lo > hi {
            return Err(RevokeError::EmptyRange { lo, hi });
        }
        self.add_serials(ca, [SerialRange { lo, hi }]);
        Ok(self)
    }

    /// Revokes many serial ranges of one CA at once; ranges must be valid (`1 <= lo <= hi`).
    pub fn revoke_serial_ranges(
        &mut self,
        ca: &CaScope,
        ranges: impl IntoIterator<Item = SerialRange>,
    ) -> Result<&mut Self, RevokeError> {
        let mut checked = Vec::new();
        for r in ranges {
            if r.lo == 0 {
                return Err(RevokeError::SerialZero);
            }
            if r.lo > r.hi {
                return Err(RevokeError::EmptyRange { lo: r.lo, hi: r.hi });
            }
            checked.push(r);
        }
        self.add_serials(ca, checked);
        Ok(self)
    }

    /// Appends to the serial ranges of `ca`. Looks up before inserting so the common case
    /// does not clone the CA blob.
    fn add_serials(&mut self, ca: &CaScope, ranges: impl IntoIterator<Item = SerialRange>) {
        let pending = match self.serials.get_mut(ca) {
            Some(p) => p,
            None => self.serials.entry(ca.clone()).or_default(),
        };
        for r in ranges {
            pending.push(r);
        }
    }

    /// Revokes every certificate of `ca` whose key ID is `key_id`.
    pub fn revoke_key_id(&mut self, ca: &CaScope, key_id: &[u8]) -> Result<&mut Self, RevokeError> {
        if key_id.contains(&0) {
            return Err(RevokeError::NulInKeyId);
        }
        match self.key_ids.get_mut(ca) {
            Some(ids) => ids.push(key_id.to_vec()),
            None => {
                self.key_ids.insert(ca.clone(), vec![key_id.to_vec()]);
            }
        }
        Ok(self)
    }

    /// Revokes a plain key by listing it (and so every certificate for it).
    pub fn revoke_key(&mut self, key: &KeyData) -> &mut Self {
        self.explicit_keys.push(key_blob(key));
        self
    }

    /// Revokes the plain key whose wire-blob SHA-1 is `hash`.
    pub fn revoke_sha1(&mut self, hash: [u8; 20]) -> &mut Self {
        self.sha1.push(hash);
        self
    }

    /// Revokes the plain key whose wire-blob SHA-256 is `hash`.
    pub fn revoke_sha256(&mut self, hash: [u8; 32]) -> &mut Self {
        self.sha256.push(hash);
        self
    }

    /// Revokes a certificate as `ssh-keygen -k` does for a bare certificate line: by serial
    /// under its CA, or by key ID when its serial is 0.
    pub fn revoke_certificate(&mut self, cert: &CertFields<'_>) -> Result<&mut Self, RevokeError> {
        let ca = CaScope::key(cert.ca);
        if cert.serial == 0 {
            self.revoke_key_id(&ca, cert.key_id)
        } else {
            self.revoke_serial(&ca, cert.serial)
        }
    }

    /// Sorts and merges everything into a [`Krl`].
    pub fn build(self) -> Krl {
        let mut certs: BTreeMap<CaScope, CertRevocations> = BTreeMap::new();
        for (ca, ranges) in self.serials {
            certs.entry(ca).or_default().serials = ranges.normalize();
        }
        for (ca, mut ids) in self.key_ids {
            ids.sort_unstable();
            ids.dedup();
            certs.entry(ca).or_default().key_ids = ids;
        }
        certs.retain(|_, c| !c.is_empty());
        Krl {
            version: self.version,
            generated_date: self.generated_date,
            comment: self.comment,
            certs,
            explicit_keys: sorted(self.explicit_keys),
            sha1: sorted(self.sha1),
            sha256: sorted(self.sha256),
        }
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}

/// A normalized key revocation list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    version: u64,
    generated_date: u64,
    comment: Vec<u8>,
    certs: BTreeMap<CaScope, CertRevocations>,
    explicit_keys: Vec<Vec<u8>>,
    sha1: Vec<[u8; 20]>,
    sha256: Vec<[u8; 32]>,
}

impl Krl {
    /// `krl_version` from the header.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `generated_date` from the header, seconds since the Unix epoch.
    pub fn generated_date(&self) -> u64 {
        self.generated_date
    }

    /// The header comment, as raw bytes.
    pub fn comment(&self) -> &[u8] {
        &self.comment
    }

    /// Certificate revocations per CA scope, [`CaScope::Any`] first.
    pub fn certs(&self) -> impl Iterator<Item = (&CaScope, &CertRevocations)> {
        self.certs.iter()
    }

    /// Revoked plain-key wire blobs, sorted.
    pub fn explicit_keys(&self) -> &[Vec<u8>] {
        &self.explicit_keys
    }

    /// Revoked SHA-1 key hashes, sorted.
    pub fn sha1s(&self) -> &[[u8; 20]] {
        &self.sha1
    }

    /// Revoked SHA-256 key hashes, sorted.
    pub fn sha256s(&self) -> &[[u8; 32]] {
        &self.sha256
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
            && self.explicit_keys.is_empty()
            && self.sha1.is_empty()
            && self.sha256.is_empty()
    }

    /// Whether a plain key is revoked, by the same rules as OpenSSH's `ssh_krl_check_key`.
    pub fn check_key(&self, key: &KeyData) -> Option<Revocation> {
        let blob = key_blob(key);
        let sha1: [u8; 20] = sha1::Sha1::digest(&blob).into();
        if self.sha1.binary_search(&sha1).is_ok() {
            return Some(Revocation::Sha1);
        }
        let sha256: [u8; 32] = sha2::Sha256::digest(&blob).into();
        if self.sha256.binary_search(&sha256).is_ok() {
            return Some(Revocation::Sha256);
        }
        if self.explicit_keys.binary_search(&blob).is_ok() {
            return Some(Revocation::ExplicitKey);
        }
        None
    }

    /// Whether a certificate is revoked: its key, its serial or key ID under its CA or
    /// under any CA, or its CA key, as OpenSSH's `ssh_krl_check_key` checks them.
    pub fn check_certificate(&self, cert: &CertFields<'_>) -> Option<Revocation> {
        if let Some(r) = self.check_key(cert.key) {
            return Some(r);
        }
        let ca = CaScope::key(cert.ca);
        for scope in [&ca, &CaScope::Any] {
            if let Some(r) = self
                .certs
                .get(scope)
                .and_then(|c| c.revokes(cert.serial, cert.key_id))
            {
                return Some(r);
            }
        }
        self.check_key(cert.ca).map(|_| Revocation::CaKey)
    }

    /// Encodes the KRL. Deterministic: equal KRLs give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode::encode(self)
    }

    /// Decodes a KRL with the checks of OpenSSH's parser (see [`DecodeErrorKind`]).
    pub fn decode(bytes: &[u8]) -> Result<Krl, DecodeError> {
        decode::decode(bytes)
    }
}
