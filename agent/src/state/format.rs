//! The on-disk layout of the host view (`STATE_DIR/hostview`), and its encoder and full
//! decoder.
//!
//! The file is made to be queried by a short-lived process with a handful of `pread`s,
//! without reading it whole: a fixed header, then sections laid end to end.
//!
//! ```text
//! header (512 bytes)   magic "SGNFVIEW", format version, file length, revision, write
//!                      time, and (offset, length, count) of each section; CRC-32 at the end
//! entries              one record per (account, user) grant, sorted by (account, user)
//! payloads             key IDs, principals and authorized keys, deduplicated across entries
//! key ID index         table: (h(account, key ID), entry offset) -> the `principals` query
//! account index        table: (h(account), entry offset) -> the `authorized-keys` query
//! revoked fingerprints table: SHA-256 of every revoked plain key (listed or by hash)
//! revoked key IDs      table: SHA-256 over (CA fingerprint or zeros for any CA, key ID)
//! revoked serials      table: (CA fingerprint or zeros, first serial, last serial), merged
//! revocations          one record: the revocation set as received (for reloading, the KRL)
//! disabled users       one record: the disabled users as received
//! ```
//!
//! A record is `len: u32, crc: u32, body`, the CRC-32 taken over the section number, the
//! record's offset in its section and the body, so a record read through a wrong offset is
//! caught. A table is an array of sorted, unique, fixed-width rows (compared bytewise) cut
//! into blocks of 64 rows, each followed by its CRC-32 (over section number,
//! block number and rows), preceded by a copy of each block's first row (the fences) to
//! find the block to read; see `table.rs`. Integers are little-endian, except the
//! parts of table rows that must sort numerically (offsets, serials), which are big-endian.
//!
//! Encoding is deterministic, so [`decode`] checks a file completely by re-encoding what it
//! read and comparing the bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest as _, Sha256};

use super::table::{self, TableSpec};
use super::{CertificateRevocations, Entry, Revocations, State};

/// First eight bytes of a host view file.
pub const MAGIC: [u8; 8] = *b"SGNFVIEW";
/// The layout described in this module. A reader refuses any other version.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header, the CRC-32 in its last four bytes included.
pub const HEADER_LEN: usize = 512;
/// Largest record body a reader accepts (and the encoder writes).
pub const MAX_RECORD_LEN: usize = 1 << 20;
/// Bytes read at once when the length of a record is not known yet: most records fit.
const RECORD_PROBE_LEN: usize = 512;

/// One of the sections, in file order. The discriminant is the section number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionId {
    Entries = 0,
    Payloads = 1,
    KeyIdIndex = 2,
    AccountIndex = 3,
    RevokedFingerprints = 4,
    RevokedKeyIds = 5,
    RevokedSerials = 6,
    Revocations = 7,
    DisabledUsers = 8,
}

pub(crate) const SECTION_COUNT: usize = 9;
const SECTIONS: [SectionId; SECTION_COUNT] = [
    SectionId::Entries,
    SectionId::Payloads,
    SectionId::KeyIdIndex,
    SectionId::AccountIndex,
    SectionId::RevokedFingerprints,
    SectionId::RevokedKeyIds,
    SectionId::RevokedSerials,
    SectionId::Revocations,
    SectionId::DisabledUsers,
];

impl SectionId {
    /// The section's name, for errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SectionId::Entries => "entries",
            SectionId::Payloads => "payloads",
            SectionId::KeyIdIndex => "key ID index",
            SectionId::AccountIndex => "account index",
            SectionId::RevokedFingerprints => "revoked fingerprints",
            SectionId::RevokedKeyIds => "revoked key IDs",
            SectionId::RevokedSerials => "revoked serials",
            SectionId::Revocations => "revocations",
            SectionId::DisabledUsers => "disabled users",
        }
    }

    /// Row width if the section is a table.
    pub(crate) fn table_width(self) -> Option<usize> {
        match self {
            SectionId::KeyIdIndex | SectionId::AccountIndex => Some(16),
            SectionId::RevokedFingerprints | SectionId::RevokedKeyIds => Some(32),
            SectionId::RevokedSerials => Some(48),
            _ => None,
        }
    }
}

/// Rows per table block: 1 KiB of index rows, 3 KiB of serial rows.
pub(crate) const BLOCK_ROWS: usize = 64;

/// Why a host view file cannot be used. Every variant means "fail closed".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Reading the file failed (missing, permission denied, I/O error).
    #[error("cannot read the state file")]
    Io(#[source] io::Error),
    /// Not a host view file at all.
    #[error("not a signoff state file (bad magic)")]
    BadMagic,
    /// Written by another version of the agent.
    #[error(
        "state file format version {found} is not supported (this agent reads {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// The file is shorter than it says (or than a header).
    #[error("state file is truncated: {actual} bytes, expected {expected}")]
    Truncated {
        /// Length the header announces (or the header length).
        expected: u64,
        /// Length on disk.
        actual: u64,
    },
    /// The file is longer than it says.
    #[error("state file has trailing data: {actual} bytes, expected {expected}")]
    TrailingData {
        /// Length the header announces.
        expected: u64,
        /// Length on disk.
        actual: u64,
    },
    /// The header's CRC-32 does not match.
    #[error("state file header checksum mismatch")]
    HeaderChecksum,
    /// The header's section table is inconsistent.
    #[error("state file section table is inconsistent: {0}")]
    BadLayout(&'static str),
    /// A record offset or length points outside its section.
    #[error("record at {section} offset {offset} is out of bounds")]
    RecordOutOfBounds {
        /// Section name.
        section: &'static str,
        /// Offset in the section.
        offset: u64,
    },
    /// A record's CRC-32 does not match.
    #[error("record at {section} offset {offset} fails its checksum")]
    RecordChecksum {
        /// Section name.
        section: &'static str,
        /// Offset in the section.
        offset: u64,
    },
    /// A record's checksum matches but its contents do not parse.
    #[error("record at {section} offset {offset} is malformed: {what}")]
    BadRecord {
        /// Section name.
        section: &'static str,
        /// Offset in the section.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A table block's CRC-32 does not match.
    #[error("{section} block {block} fails its checksum")]
    BlockChecksum {
        /// Section name.
        section: &'static str,
        /// Block number.
        block: u64,
    },
    /// A table's fences disagree with its blocks, or its rows are out of order.
    #[error("{section} is inconsistent")]
    TableInconsistent {
        /// Section name.
        section: &'static str,
    },
    /// Every record checks out, but the file is not what this agent would write for that
    /// content (found only by a full [`decode`]).
    #[error("state file is not in canonical form")]
    NotCanonical,
}

/// Positioned reads, from a file (`pread`) or from memory.
pub trait ReadAt {
    /// Fills `buf` from `offset`, or fails (with `UnexpectedEof` past the end).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

/// Where a section is in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Section {
    /// Absolute offset of its first byte.
    pub(crate) offset: u64,
    /// Length in bytes.
    pub(crate) len: u64,
    /// Records or rows.
    pub(crate) count: u64,
}

/// The parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) file_len: u64,
    pub(crate) revision: u64,
    pub(crate) written_at: u64,
    pub(crate) sections: [Section; SECTION_COUNT],
}

const HEADER_FIXED: usize = 40;
const HEADER_CRC_AT: usize = HEADER_LEN - 4;

impl Header {
    pub(crate) fn section(&self, id: SectionId) -> Section {
        self.sections[id as usize]
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.file_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.revision.to_le_bytes());
        h[32..40].copy_from_slice(&self.written_at.to_le_bytes());
        for (i, s) in self.sections.iter().enumerate() {
            let at = HEADER_FIXED + i * 24;
            h[at..at + 8].copy_from_slice(&s.offset.to_le_bytes());
            h[at + 8..at + 16].copy_from_slice(&s.len.to_le_bytes());
            h[at + 16..at + 24].copy_from_slice(&s.count.to_le_bytes());
        }
        let crc = crc32fast::hash(&h[..HEADER_CRC_AT]);
        h[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads and checks the header of a source whose length is `actual_len`: magic,
    /// version, checksum, file length, and a section table that tiles the file exactly.
    pub(crate) fn read<R: ReadAt + ?Sized>(
        src: &R,
        actual_len: u64,
    ) -> Result<Header, FormatError> {
        let mut h = [0u8; HEADER_LEN];
        if actual_len < HEADER_LEN as u64 {
            // Say "bad magic" rather than "truncated" for a short file that is not ours.
            let n = usize::try_from(actual_len).unwrap_or(0).min(MAGIC.len());
            src.read_exact_at(&mut h[..n], 0).map_err(FormatError::Io)?;
            if h[..n] != MAGIC[..n] {
                return Err(FormatError::BadMagic);
            }
            return Err(FormatError::Truncated {
                expected: HEADER_LEN as u64,
                actual: actual_len,
            });
        }
        src.read_exact_at(&mut h, 0).map_err(FormatError::Io)?;
        if h[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = le_u32(&h[8..12]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        if le_u32(&h[HEADER_CRC_AT..]) != crc32fast::hash(&h[..HEADER_CRC_AT]) {
            return Err(FormatError::HeaderChecksum);
        }
        if le_u32(&h[12..16]) as usize != HEADER_LEN {
            return Err(FormatError::BadLayout("header length"));
        }
        let file_len = le_u64(&h[16..24]);
        if actual_len < file_len {
            return Err(FormatError::Truncated {
                expected: file_len,
                actual: actual_len,
            });
        }
        if actual_len > file_len {
            return Err(FormatError::TrailingData {
                expected: file_len,
                actual: actual_len,
            });
        }
        let mut sections = [Section::default(); SECTION_COUNT];
        let mut next = HEADER_LEN as u64;
        for (i, id) in SECTIONS.iter().enumerate() {
            let at = HEADER_FIXED + i * 24;
            let s = Section {
                offset: le_u64(&h[at..at + 8]),
                len: le_u64(&h[at + 8..at + 16]),
                count: le_u64(&h[at + 16..at + 24]),
            };
            if s.offset != next {
                return Err(FormatError::BadLayout("sections do not follow each other"));
            }
            next = s
                .offset
                .checked_add(s.len)
                .ok_or(FormatError::BadLayout("section length overflows"))?;
            check_section_shape(*id, s)?;
            sections[i] = s;
        }
        if next != file_len {
            return Err(FormatError::BadLayout(
                "sections do not end at the end of the file",
            ));
        }
        if h[HEADER_FIXED + SECTION_COUNT * 24..HEADER_CRC_AT]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(FormatError::BadLayout("reserved header bytes are not zero"));
        }
        Ok(Header {
            file_len,
            revision: le_u64(&h[24..32]),
            written_at: le_u64(&h[32..40]),
            sections,
        })
    }
}

fn check_section_shape(id: SectionId, s: Section) -> Result<(), FormatError> {
    match id.table_width() {
        Some(width) => {
            if table::byte_len(s.count, width) != Some(s.len) {
                return Err(FormatError::BadLayout(
                    "table length does not match its row count",
                ));
            }
        }
        None => {
            let single = matches!(id, SectionId::Revocations | SectionId::DisabledUsers);
            // Every record takes at least its 8-byte frame.
            if (single && s.count != 1) || s.count > s.len / 8 {
                return Err(FormatError::BadLayout(
                    "record count does not fit the section",
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn record_crc(section: SectionId, offset: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[section as u8]);
    h.update(&offset.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Reads the record at `offset` of `section` and checks bounds and checksum.
pub(crate) fn read_record<R: ReadAt + ?Sized>(
    src: &R,
    id: SectionId,
    section: Section,
    offset: u64,
) -> Result<Vec<u8>, FormatError> {
    let oob = || FormatError::RecordOutOfBounds {
        section: id.name(),
        offset,
    };
    let room = section.len.checked_sub(offset).ok_or_else(oob)?;
    if room < 8 {
        return Err(oob());
    }
    let probe = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(RECORD_PROBE_LEN);
    let mut buf = vec![0u8; probe];
    src.read_exact_at(&mut buf, section.offset + offset)
        .map_err(FormatError::Io)?;
    let len = le_u32(&buf[0..4]) as usize;
    let crc = le_u32(&buf[4..8]);
    if len > MAX_RECORD_LEN || 8 + len as u64 > room {
        return Err(oob());
    }
    if 8 + len > buf.len() {
        let have = buf.len();
        buf.resize(8 + len, 0);
        src.read_exact_at(&mut buf[have..], section.offset + offset + have as u64)
            .map_err(FormatError::Io)?;
    } else {
        buf.truncate(8 + len);
    }
    if record_crc(id, offset, &buf[8..]) != crc {
        return Err(FormatError::RecordChecksum {
            section: id.name(),
            offset,
        });
    }
    buf.drain(..8);
    Ok(buf)
}

/// Reads fields out of a record body; every read is bounds-checked.
pub(crate) struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
    section: SectionId,
    offset: u64,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a [u8], section: SectionId, offset: u64) -> Self {
        Fields {
            body,
            pos: 0,
            section,
            offset,
        }
    }

    pub(crate) fn bad(&self, what: &'static str) -> FormatError {
        FormatError::BadRecord {
            section: self.section.name(),
            offset: self.offset,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or_else(|| self.bad("field runs past the end of the record"))?;
        let out = &self.body[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(le_u32(self.take(4)?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(le_u64(self.take(8)?))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, FormatError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.bad("string is not UTF-8"))
    }

    /// A list's length, bounded by what the rest of the record can hold.
    pub(crate) fn count(&mut self) -> Result<usize, FormatError> {
        let n = self.u32()? as usize;
        if n > (self.body.len() - self.pos) / 4 {
            return Err(self.bad("list is longer than the record"));
        }
        Ok(n)
    }

    pub(crate) fn strings(&mut self) -> Result<Vec<String>, FormatError> {
        let n = self.count()?;
        (0..n).map(|_| self.str().map(str::to_owned)).collect()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.body.len()
    }

    pub(crate) fn end(&self) -> Result<(), FormatError> {
        if self.pos != self.body.len() {
            return Err(self.bad("trailing bytes in record"));
        }
        Ok(())
    }
}

/// Flag bit in an entry record: the entry's user is disabled (the entry is in no index).
pub(crate) const ENTRY_USER_DISABLED: u8 = 1;

/// The fixed part of an entry record, as the lookups need it.
#[derive(Debug)]
pub(crate) struct EntryRecord<'a> {
    pub(crate) not_after: u64,
    pub(crate) payload: u64,
    pub(crate) flags: u8,
    pub(crate) account: &'a str,
    pub(crate) user: &'a str,
    pub(crate) approvals: Vec<ApprovedGrantRecord<'a>>,
}

pub(crate) fn parse_entry(body: &[u8], offset: u64) -> Result<EntryRecord<'_>, FormatError> {
    let mut f = Fields::new(body, SectionId::Entries, offset);
    let mut rec = EntryRecord {
        not_after: f.u64()?,
        payload: f.u64()?,
        flags: f.u8()?,
        account: f.str()?,
        user: f.str()?,
        approvals: Vec::new(),
    };
    // Approvals follow only when there are some, so a view without any is byte for byte
    // what this format was before approvals existed.
    if !f.at_end() {
        let n = f.count()?;
        if n == 0 {
            return Err(f.bad("empty approvals list"));
        }
        for _ in 0..n {
            rec.approvals.push(ApprovedGrantRecord {
                grant_id: f.u64()?,
                host_group: f.str()?,
                not_after: f.u64()?,
                signatures: {
                    let n = f.count()?;
                    (0..n).map(|_| f.str()).collect::<Result<_, _>>()?
                },
            });
        }
    }
    f.end()?;
    Ok(rec)
}

/// One approved grant of an entry record, as read by a lookup (see
/// [`super::ApprovedGrant`]).
#[derive(Debug)]
pub struct ApprovedGrantRecord<'a> {
    /// The grant id.
    pub grant_id: u64,
    /// Its host group.
    pub host_group: &'a str,
    /// Unix seconds; 0 for never.
    pub not_after: u64,
    /// Armored SSHSIGs.
    pub signatures: Vec<&'a str>,
}

// --- hashing -------------------------------------------------------------------------

/// The CA scope of "any CA" in revocation rows (no SHA-256 is all zeros in practice).
pub const ANY_CA: [u8; 32] = [0; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Key of the key ID index: the first 8 bytes of a SHA-256 over (account, key ID).
pub(crate) fn key_id_index_hash(account: &str, key_id: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"signoff key id index\0");
    h.update((account.len() as u64).to_le_bytes());
    h.update(account.as_bytes());
    h.update(key_id.as_bytes());
    first8(&h.finalize())
}

/// Key of the account index: the first 8 bytes of a SHA-256 over the account.
pub(crate) fn account_index_hash(account: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"signoff account index\0");
    h.update(account.as_bytes());
    first8(&h.finalize())
}

/// Row of the revoked key ID table for `key_id` under CA `scope` ([`ANY_CA`] for any).
pub(crate) fn revoked_key_id_row(scope: &[u8; 32], key_id: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"signoff revoked key id\0");
    h.update(scope);
    h.update(key_id);
    h.finalize().into()
}

fn first8(d: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    a
}

/// The SHA-256 fingerprint sshd prints for a key given as a wire blob: that of its
/// canonical encoding when the blob parses, of the blob as is otherwise.
pub fn key_fingerprint(blob: &[u8]) -> [u8; 32] {
    match ssh_key::PublicKey::from_bytes(blob) {
        Ok(key) => sha256(&signoff_proto::krl::key_blob(key.key_data())),
        Err(_) => sha256(blob),
    }
}

/// The CA scope of a `ca_key` blob: [`ANY_CA`] when empty, else its fingerprint.
pub fn ca_scope(ca_key: &[u8]) -> [u8; 32] {
    if ca_key.is_empty() {
        ANY_CA
    } else {
        key_fingerprint(ca_key)
    }
}

// --- encoding ------------------------------------------------------------------------

/// The state could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// One entry holds more than a record may.
    #[error(
        "entry ({account}, {user}) is {len} bytes encoded, more than the {MAX_RECORD_LEN} allowed"
    )]
    EntryTooLarge {
        /// Account.
        account: String,
        /// User.
        user: String,
        /// Encoded length.
        len: usize,
    },
    /// The revocation set or the disabled users do not fit one record.
    #[error("{0} is more than {MAX_RECORD_LEN} bytes encoded")]
    SectionTooLarge(&'static str),
}

struct RecordSection {
    id: SectionId,
    bytes: Vec<u8>,
    count: u64,
}

impl RecordSection {
    fn new(id: SectionId) -> Self {
        RecordSection {
            id,
            bytes: Vec::new(),
            count: 0,
        }
    }

    /// Appends a record (the caller checked its size) and returns its offset.
    fn push(&mut self, body: &[u8]) -> u64 {
        let offset = self.bytes.len() as u64;
        self.bytes
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&record_crc(self.id, offset, body).to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.count += 1;
        offset
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_strings<S: AsRef<[u8]>>(out: &mut Vec<u8>, items: &[S]) {
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for s in items {
        put_bytes(out, s.as_ref());
    }
}

fn payload_body(e: &Entry) -> Vec<u8> {
    let mut b = Vec::new();
    put_strings(&mut b, &e.key_ids);
    put_strings(&mut b, &e.principals);
    put_strings(&mut b, &e.authorized_keys);
    b
}

fn revocations_body(r: &Revocations) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(r.certificates.len() as u32).to_le_bytes());
    for (ca, c) in &r.certificates {
        put_bytes(&mut b, ca);
        b.extend_from_slice(&(c.serials.len() as u32).to_le_bytes());
        for &(lo, hi) in &c.serials {
            put_u64(&mut b, lo);
            put_u64(&mut b, hi);
        }
        let ids: Vec<&String> = c.key_ids.iter().collect();
        put_strings(&mut b, &ids);
    }
    let keys: Vec<&Vec<u8>> = r.keys.iter().collect();
    put_strings(&mut b, &keys);
    let hashes: Vec<&Vec<u8>> = r.sha256.iter().collect();
    put_strings(&mut b, &hashes);
    b
}

fn parse_revocations(body: &[u8]) -> Result<Revocations, FormatError> {
    let mut f = Fields::new(body, SectionId::Revocations, 0);
    let mut r = Revocations::default();
    for _ in 0..f.count()? {
        let ca = f.bytes()?.to_vec();
        let mut c = CertificateRevocations::default();
        for _ in 0..f.count()? {
            let lo = f.u64()?;
            let hi = f.u64()?;
            c.serials.insert((lo, hi));
        }
        c.key_ids.extend(f.strings()?);
        r.certificates.insert(ca, c);
    }
    for _ in 0..f.count()? {
        r.keys.insert(f.bytes()?.to_vec());
    }
    for _ in 0..f.count()? {
        r.sha256.insert(f.bytes()?.to_vec());
    }
    f.end()?;
    Ok(r)
}

/// Merges each scope's serial ranges into sorted, disjoint, non-adjacent runs, without
/// serial 0 (OpenSSH never matches a certificate by serial 0).
fn serial_rows(r: &Revocations) -> Vec<[u8; 48]> {
    let mut by_scope: HashMap<[u8; 32], Vec<(u64, u64)>> = HashMap::new();
    for (ca, c) in &r.certificates {
        let ranges = by_scope.entry(ca_scope(ca)).or_default();
        ranges.extend(
            c.serials
                .iter()
                .map(|&(lo, hi)| (lo.max(1), hi))
                .filter(|&(lo, hi)| lo <= hi),
        );
    }
    let mut rows = Vec::new();
    for (scope, mut ranges) in by_scope {
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        for (lo, hi) in merged {
            let mut row = [0u8; 48];
            row[..32].copy_from_slice(&scope);
            row[32..40].copy_from_slice(&lo.to_be_bytes());
            row[40..].copy_from_slice(&hi.to_be_bytes());
            rows.push(row);
        }
    }
    rows
}

fn index_row(hash: [u8; 8], entry_offset: u64) -> [u8; 16] {
    let mut row = [0u8; 16];
    row[..8].copy_from_slice(&hash);
    row[8..].copy_from_slice(&entry_offset.to_be_bytes());
    row
}

/// Encodes `state` as a host view file stamped with `written_at` (Unix seconds).
pub fn encode(state: &State, written_at: u64) -> Result<Vec<u8>, EncodeError> {
    let mut entries = RecordSection::new(SectionId::Entries);
    let mut payloads = RecordSection::new(SectionId::Payloads);
    let mut payload_offsets: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut key_id_rows: Vec<[u8; 16]> = Vec::new();
    let mut account_rows: Vec<[u8; 16]> = Vec::with_capacity(state.entries.len());

    for e in state.entries.values() {
        let payload = payload_body(e);
        let fixed = 8 + 8 + 1 + 4 + e.account.len() + 4 + e.user.len();
        if payload.len() > MAX_RECORD_LEN || fixed > MAX_RECORD_LEN {
            return Err(EncodeError::EntryTooLarge {
                account: e.account.clone(),
                user: e.user.clone(),
                len: payload.len().max(fixed),
            });
        }
        let payload_offset = match payload_offsets.get(&payload) {
            Some(&off) => off,
            None => {
                let off = payloads.push(&payload);
                payload_offsets.insert(payload, off);
                off
            }
        };
        let disabled = state.disabled_users.contains(&e.user);
        let mut body = Vec::with_capacity(fixed);
        put_u64(&mut body, e.not_after);
        put_u64(&mut body, payload_offset);
        body.push(if disabled { ENTRY_USER_DISABLED } else { 0 });
        put_bytes(&mut body, e.account.as_bytes());
        put_bytes(&mut body, e.user.as_bytes());
        if !e.approvals.is_empty() {
            body.extend_from_slice(&(e.approvals.len() as u32).to_le_bytes());
            for g in &e.approvals {
                put_u64(&mut body, g.grant_id);
                put_bytes(&mut body, g.host_group.as_bytes());
                put_u64(&mut body, g.not_after);
                put_strings(&mut body, &g.signatures);
            }
        }
        if body.len() > MAX_RECORD_LEN {
            return Err(EncodeError::EntryTooLarge {
                account: e.account.clone(),
                user: e.user.clone(),
                len: body.len(),
            });
        }
        let offset = entries.push(&body);
        if !disabled {
            account_rows.push(index_row(account_index_hash(&e.account), offset));
            for key_id in &e.key_ids {
                key_id_rows.push(index_row(key_id_index_hash(&e.account, key_id), offset));
            }
        }
    }

    let r = &state.revocations;
    let mut fingerprint_rows: Vec<[u8; 32]> = r.keys.iter().map(|k| key_fingerprint(k)).collect();
    fingerprint_rows.extend(
        r.sha256
            .iter()
            .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok()),
    );
    let mut key_id_revocation_rows = Vec::new();
    for (ca, c) in &r.certificates {
        let scope = ca_scope(ca);
        key_id_revocation_rows.extend(
            c.key_ids
                .iter()
                .map(|id| revoked_key_id_row(&scope, id.as_bytes())),
        );
    }

    let mut revocations = RecordSection::new(SectionId::Revocations);
    let body = revocations_body(r);
    if body.len() > MAX_RECORD_LEN {
        return Err(EncodeError::SectionTooLarge("the revocation set"));
    }
    revocations.push(&body);
    let mut disabled = RecordSection::new(SectionId::DisabledUsers);
    let users: Vec<&String> = state.disabled_users.iter().collect();
    let mut body = Vec::new();
    put_strings(&mut body, &users);
    if body.len() > MAX_RECORD_LEN {
        return Err(EncodeError::SectionTooLarge("the disabled users list"));
    }
    disabled.push(&body);

    let parts: [(Vec<u8>, u64); SECTION_COUNT] = [
        (entries.bytes, entries.count),
        (payloads.bytes, payloads.count),
        table::build(TableSpec::of(SectionId::KeyIdIndex), key_id_rows),
        table::build(TableSpec::of(SectionId::AccountIndex), account_rows),
        table::build(
            TableSpec::of(SectionId::RevokedFingerprints),
            fingerprint_rows,
        ),
        table::build(
            TableSpec::of(SectionId::RevokedKeyIds),
            key_id_revocation_rows,
        ),
        table::build(TableSpec::of(SectionId::RevokedSerials), serial_rows(r)),
        (revocations.bytes, revocations.count),
        (disabled.bytes, disabled.count),
    ];

    let mut header = Header {
        file_len: 0,
        revision: state.revision,
        written_at,
        sections: [Section::default(); SECTION_COUNT],
    };
    let mut offset = HEADER_LEN as u64;
    for (i, (bytes, count)) in parts.iter().enumerate() {
        header.sections[i] = Section {
            offset,
            len: bytes.len() as u64,
            count: *count,
        };
        offset += bytes.len() as u64;
    }
    header.file_len = offset;
    let mut out = Vec::with_capacity(usize::try_from(offset).unwrap_or(0));
    out.extend_from_slice(&header.encode());
    for (bytes, _) in &parts {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

// --- full decoding -------------------------------------------------------------------

/// What a full decode gives back.
#[derive(Debug)]
pub struct Decoded {
    /// The state.
    pub state: State,
    /// When the file was written (Unix seconds).
    pub written_at: u64,
}

/// Decodes a whole host view file and checks every byte of it: each record's bounds and
/// checksum, then that re-encoding what was read gives back exactly `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, FormatError> {
    let header = Header::read(bytes, bytes.len() as u64)?;
    let entries_section = header.section(SectionId::Entries);
    let payloads_section = header.section(SectionId::Payloads);
    let mut state = State::new();
    state.revision = header.revision;

    let mut offset = 0u64;
    for _ in 0..entries_section.count {
        let body = read_record(bytes, SectionId::Entries, entries_section, offset)?;
        let rec = parse_entry(&body, offset)?;
        let payload = read_record(bytes, SectionId::Payloads, payloads_section, rec.payload)?;
        let mut f = Fields::new(&payload, SectionId::Payloads, rec.payload);
        let entry = Entry {
            account: rec.account.to_owned(),
            user: rec.user.to_owned(),
            key_ids: f.strings()?,
            principals: f.strings()?,
            authorized_keys: f.strings()?,
            not_after: rec.not_after,
            approvals: rec
                .approvals
                .iter()
                .map(|g| super::ApprovedGrant {
                    grant_id: g.grant_id,
                    host_group: g.host_group.to_owned(),
                    not_after: g.not_after,
                    signatures: g.signatures.iter().map(|s| (*s).to_owned()).collect(),
                })
                .collect(),
        };
        f.end()?;
        state.insert_entry(entry);
        offset += 8 + body.len() as u64;
    }

    let section = header.section(SectionId::Revocations);
    state.revocations =
        parse_revocations(&read_record(bytes, SectionId::Revocations, section, 0)?)?;
    let section = header.section(SectionId::DisabledUsers);
    let body = read_record(bytes, SectionId::DisabledUsers, section, 0)?;
    let mut f = Fields::new(&body, SectionId::DisabledUsers, 0);
    state.disabled_users.extend(f.strings()?);
    f.end()?;

    let again = encode(&state, header.written_at).map_err(|_| FormatError::NotCanonical)?;
    if again != bytes {
        return Err(FormatError::NotCanonical);
    }
    Ok(Decoded {
        state,
        written_at: header.written_at,
    })
}
