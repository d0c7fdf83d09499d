//! Queries against a host view file on disk, for the commands sshd runs: a header read,
//! then a few positioned reads per question, never the whole file.

use std::fs::File;
use std::path::Path;

use super::format::{
    ANY_CA, ENTRY_USER_DISABLED, Fields, FormatError, Header, ReadAt, SectionId,
    account_index_hash, be_u64, key_id_index_hash, parse_entry, read_record, revoked_key_id_row,
};
use super::table::{Table, TableSpec};
use crate::holds::Holds;

/// A certificate as sshd describes it to `AuthorizedPrincipalsCommand`.
#[derive(Debug, Clone, Copy)]
pub struct CertificateQuery<'a> {
    /// `%i`.
    pub key_id: &'a str,
    /// `%s`.
    pub serial: u64,
    /// `%F`, decoded: SHA-256 of the CA key.
    pub ca_fingerprint: [u8; 32],
    /// `%f`, decoded: SHA-256 of the certified (plain) key.
    pub key_fingerprint: [u8; 32],
}

/// Why a certificate is refused by the revocation set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The certified key is revoked (listed, or by its SHA-256).
    Key,
    /// The CA key itself is revoked.
    CaKey,
    /// The key ID is revoked, for this CA or (`any_ca`) for every CA.
    KeyId {
        /// Revoked for every CA rather than this one.
        any_ca: bool,
    },
    /// The serial is revoked, for this CA or (`any_ca`) for every CA.
    Serial {
        /// Revoked for every CA rather than this one.
        any_ca: bool,
    },
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scope = |any: bool| if any { "for every CA" } else { "for this CA" };
        match self {
            Revoked::Key => f.write_str("the key is revoked"),
            Revoked::CaKey => f.write_str("the CA key is revoked"),
            Revoked::KeyId { any_ca } => write!(f, "the key ID is revoked {}", scope(*any_ca)),
            Revoked::Serial { any_ca } => write!(f, "the serial is revoked {}", scope(*any_ca)),
        }
    }
}

/// How many grants matched a query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Matches {
    /// Live grants (not expired) that matched.
    pub live: usize,
    /// Grants that matched but have expired.
    pub expired: usize,
    /// Grants that matched but were refused by the approval check (privileged accounts).
    pub unapproved: usize,
    /// Grants that matched a person this host holds out until their re-enable is
    /// approved ([`crate::holds`]).
    pub held: usize,
}

/// Decides whether an entry of a privileged account is admitted (see
/// [`crate::approvals`]).
pub type ApprovalGate<'a> = &'a crate::approvals::ApprovalCheck<'a>;

/// An open host view file, its header checked.
#[derive(Debug)]
pub struct StateFile<R = File> {
    src: R,
    header: Header,
}

impl StateFile<File> {
    /// Opens `path` and checks its header (magic, version, checksum, length, layout).
    pub fn open(path: &Path) -> Result<StateFile<File>, FormatError> {
        let file = File::open(path).map_err(FormatError::Io)?;
        let len = file.metadata().map_err(FormatError::Io)?.len();
        StateFile::from_source(file, len)
    }
}

impl<R: ReadAt> StateFile<R> {
    /// Checks the header of `src`, whose length is `len`.
    pub fn from_source(src: R, len: u64) -> Result<StateFile<R>, FormatError> {
        let header = Header::read(&src, len)?;
        Ok(StateFile { src, header })
    }

    /// The control plane's revision of this view.
    pub fn revision(&self) -> u64 {
        self.header.revision
    }

    /// When the file was written, Unix seconds.
    pub fn written_at(&self) -> u64 {
        self.header.written_at
    }

    fn table(&self, id: SectionId) -> Table {
        Table::new(TableSpec::of(id), self.header.section(id))
    }

    /// Whether a plain key with this SHA-256 fingerprint is revoked.
    pub fn is_key_revoked(&self, fingerprint: &[u8; 32]) -> Result<bool, FormatError> {
        self.table(SectionId::RevokedFingerprints)
            .contains(&self.src, fingerprint)
    }

    /// Checks a certificate against the revocation set, as OpenSSH checks a KRL: its key,
    /// its CA key, its key ID and its serial (never serial 0) under its CA or any CA.
    pub fn check_certificate(
        &self,
        q: &CertificateQuery<'_>,
    ) -> Result<Option<Revoked>, FormatError> {
        if self.is_key_revoked(&q.key_fingerprint)? {
            return Ok(Some(Revoked::Key));
        }
        if self.is_key_revoked(&q.ca_fingerprint)? {
            return Ok(Some(Revoked::CaKey));
        }
        let key_ids = self.table(SectionId::RevokedKeyIds);
        let serials = self.table(SectionId::RevokedSerials);
        for (scope, any_ca) in [(&q.ca_fingerprint, false), (&ANY_CA, true)] {
            let row = revoked_key_id_row(scope, q.key_id.as_bytes());
            if key_ids.contains(&self.src, &row)? {
                return Ok(Some(Revoked::KeyId { any_ca }));
            }
            if q.serial != 0 {
                let mut probe = [0xffu8; 48];
                probe[..32].copy_from_slice(scope);
                probe[32..40].copy_from_slice(&q.serial.to_be_bytes());
                if let Some(row) = serials.floor(&self.src, &probe)?
                    && row[..32] == scope[..]
                    && be_u64(&row[40..48]) >= q.serial
                {
                    return Ok(Some(Revoked::Serial { any_ca }));
                }
            }
        }
        Ok(None)
    }

    /// Appends to `out` the principals of every live grant of `account` to a user with
    /// key ID `key_id`. A grant is live when its `not_after` is 0 or after `now`.
    pub fn principals(
        &self,
        account: &str,
        key_id: &str,
        now: u64,
        out: &mut Vec<String>,
    ) -> Result<Matches, FormatError> {
        self.principals_gated(account, key_id, now, None, None, out)
    }

    /// [`StateFile::principals`], where an entry counts only if `gate` (when given)
    /// admits it and `held` (when given) does not hold its user out; refused entries are
    /// counted in [`Matches::unapproved`] and [`Matches::held`].
    pub fn principals_gated(
        &self,
        account: &str,
        key_id: &str,
        now: u64,
        gate: Option<ApprovalGate<'_>>,
        held: Option<&Holds>,
        out: &mut Vec<String>,
    ) -> Result<Matches, FormatError> {
        let mut matches = Matches::default();
        let prefix = key_id_index_hash(account, key_id);
        self.table(SectionId::KeyIdIndex)
            .scan_prefix::<_, FormatError>(&self.src, &prefix, |row| {
                self.visit_entry(
                    be_u64(&row[8..16]),
                    account,
                    now,
                    (gate, held),
                    &mut matches,
                    |f, live| {
                        let mut has_key_id = false;
                        for _ in 0..f.count()? {
                            has_key_id |= f.str()? == key_id;
                        }
                        if has_key_id && live {
                            for _ in 0..f.count()? {
                                out.push(f.str()?.to_owned());
                            }
                        }
                        Ok(has_key_id)
                    },
                )
            })?;
        Ok(matches)
    }

    /// Calls `each` with every authorized key line of every live grant of `account`.
    pub fn authorized_keys(
        &self,
        account: &str,
        now: u64,
        each: impl FnMut(&str),
    ) -> Result<Matches, FormatError> {
        self.authorized_keys_gated(account, now, None, None, each)
    }

    /// [`StateFile::authorized_keys`], where an entry counts only if `gate` (when given)
    /// admits it.
    pub fn authorized_keys_gated(
        &self,
        account: &str,
        now: u64,
        gate: Option<ApprovalGate<'_>>,
        held: Option<&Holds>,
        mut each: impl FnMut(&str),
    ) -> Result<Matches, FormatError> {
        let mut matches = Matches::default();
        let prefix = account_index_hash(account);
        self.table(SectionId::AccountIndex)
            .scan_prefix::<_, FormatError>(&self.src, &prefix, |row| {
                self.visit_entry(
                    be_u64(&row[8..16]),
                    account,
                    now,
                    (gate, held),
                    &mut matches,
                    |f, live| {
                        for _ in 0..2 {
                            for _ in 0..f.count()? {
                                f.str()?;
                            }
                        }
                        if live {
                            for _ in 0..f.count()? {
                                each(f.str()?);
                            }
                        }
                        Ok(true)
                    },
                )
            })?;
        Ok(matches)
    }

    /// Reads the entry at `offset`; if it is for `account` and its user is enabled, hands
    /// its payload to `payload` (with whether the grant is live), which says whether it
    /// matched, and counts the match.
    fn visit_entry(
        &self,
        offset: u64,
        account: &str,
        now: u64,
        (gate, held): (Option<ApprovalGate<'_>>, Option<&Holds>),
        matches: &mut Matches,
        payload: impl FnOnce(&mut Fields<'_>, bool) -> Result<bool, FormatError>,
    ) -> Result<(), FormatError> {
        let entries = self.header.section(SectionId::Entries);
        let body = read_record(&self.src, SectionId::Entries, entries, offset)?;
        let entry = parse_entry(&body, offset)?;
        // The index key is a hash: a different account may share it.
        if entry.account != account || entry.flags & ENTRY_USER_DISABLED != 0 {
            return Ok(());
        }
        let is_held = held.is_some_and(|h| !h.holding(entry.user).is_empty());
        let unexpired = entry.not_after == 0 || entry.not_after > now;
        // Only an unexpired entry is put to the approval check (an expired one is refused
        // anyway, and says so).
        let approved = !unexpired || gate.is_none_or(|g| g.admits(entry.user, &entry.approvals));
        let live = unexpired && approved && !is_held;
        let payloads = self.header.section(SectionId::Payloads);
        let body = read_record(&self.src, SectionId::Payloads, payloads, entry.payload)?;
        let mut fields = Fields::new(&body, SectionId::Payloads, entry.payload);
        if payload(&mut fields, live)? {
            if live {
                matches.live += 1;
            } else if is_held {
                matches.held += 1;
            } else if !approved {
                matches.unapproved += 1;
            } else {
                matches.expired += 1;
            }
        }
        Ok(())
    }
}
