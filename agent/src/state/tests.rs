//! Unit tests of the host view: applying snapshots and deltas, the file round trip, every
//! lookup, and one test per way a corrupt file is refused.

use std::fs;

use signoff_proto::v1;

use super::format::{self, FormatError, HEADER_LEN, SectionId, key_fingerprint};
use super::*;

pub(crate) const NOW: u64 = 1_700_000_000;

pub(crate) fn key_blob(seed: u8) -> Vec<u8> {
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]));
    signoff_proto::krl::key_blob(key.public_key().key_data())
}

pub(crate) fn entry(
    account: &str,
    user: &str,
    key_ids: &[&str],
    principals: &[&str],
) -> v1::PrincipalsEntry {
    v1::PrincipalsEntry {
        account: account.into(),
        user: user.into(),
        key_ids: key_ids.iter().map(|s| (*s).into()).collect(),
        principals: principals.iter().map(|s| (*s).into()).collect(),
        authorized_keys: Vec::new(),
        not_after: 0,
        approvals: Vec::new(),
    }
}

/// CA 1 is the fleet's CA, CA 2 another one; key 10 is alice's, 11 bob's.
pub(crate) fn sample_view() -> v1::HostView {
    let mut expired = entry("root", "carol", &["carol@corp"], &["carol"]);
    expired.not_after = NOW - 1;
    let mut later = entry("app", "carol", &["carol@corp"], &["carol"]);
    later.not_after = NOW + 3600;
    let mut alice_root = entry(
        "root",
        "alice",
        &["alice@corp", "alice-laptop"],
        &["alice", "admins"],
    );
    alice_root.authorized_keys = vec![format!(
        "ssh-ed25519 {} alice@laptop",
        base64_of(&key_blob(10))
    )];
    let mut bob_root = entry("root", "bob", &["bob@corp"], &["bob"]);
    bob_root.authorized_keys = vec![format!("ssh-ed25519 {} bob", base64_of(&key_blob(11)))];
    v1::HostView {
        revision: 42,
        principals: vec![
            alice_root,
            entry("app", "alice", &["alice@corp"], &["alice"]),
            bob_root,
            expired,
            later,
            entry("root", "dave", &["dave@corp"], &["dave"]),
            entry("root", "shared-id-1", &["shared"], &["s1"]),
            entry("root", "shared-id-2", &["shared"], &["s2"]),
        ],
        revocations: Some(v1::RevocationSet {
            certificates: vec![
                v1::CaRevocations {
                    ca_key: key_blob(1),
                    serials: vec![
                        v1::SerialRange { lo: 100, hi: 200 },
                        v1::SerialRange { lo: 500, hi: 500 },
                    ],
                    key_ids: vec!["bob@corp".into()],
                },
                v1::CaRevocations {
                    ca_key: Vec::new(),
                    serials: vec![v1::SerialRange { lo: 0, hi: 3 }],
                    key_ids: vec!["mallory@corp".into()],
                },
            ],
            keys: vec![key_blob(20)],
            sha256: vec![format::sha256(&key_blob(21)).to_vec()],
        }),
        disabled_users: vec!["dave".into()],
        signoffs: vec![],
        trusted_user_ca_keys: vec![],
        ..Default::default()
    }
}

pub(crate) fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn sample_bytes() -> Vec<u8> {
    encode(&State::from_snapshot(sample_view()).unwrap(), NOW).unwrap()
}

fn open(bytes: Vec<u8>) -> Result<StateFile<Vec<u8>>, FormatError> {
    let len = bytes.len() as u64;
    StateFile::from_source(bytes, len)
}

fn principals_of(f: &StateFile<Vec<u8>>, account: &str, key_id: &str) -> (Vec<String>, Matches) {
    let mut out = Vec::new();
    let m = f.principals(account, key_id, NOW, &mut out).unwrap();
    (out, m)
}

fn query(key_id: &str, serial: u64, ca: u8, key: u8) -> CertificateQuery<'_> {
    CertificateQuery {
        key_id,
        serial,
        ca_fingerprint: key_fingerprint(&key_blob(ca)),
        key_fingerprint: key_fingerprint(&key_blob(key)),
    }
}

// --- applying snapshots and deltas ----------------------------------------------------

#[test]
fn snapshot_then_delta() {
    let mut s = State::from_snapshot(sample_view()).unwrap();
    assert_eq!(s.revision(), 42);
    assert_eq!(s.entries().len(), 8);
    assert!(s.is_disabled("dave"));

    let delta = v1::HostViewDelta {
        from_revision: 42,
        revision: 43,
        upsert_principals: vec![entry("root", "alice", &["alice@corp"], &["alice-only"])],
        remove_principals: vec![v1::PrincipalsKey {
            account: "app".into(),
            user: "alice".into(),
        }],
        add_revocations: Some(v1::RevocationSet {
            certificates: vec![v1::CaRevocations {
                ca_key: Vec::new(),
                serials: vec![],
                key_ids: vec!["eve@corp".into()],
            }],
            keys: vec![],
            sha256: vec![],
        }),
        remove_revocations: Some(v1::RevocationSet {
            certificates: vec![v1::CaRevocations {
                ca_key: key_blob(1),
                serials: vec![v1::SerialRange { lo: 500, hi: 500 }],
                key_ids: vec!["bob@corp".into()],
            }],
            keys: vec![key_blob(20)],
            sha256: vec![],
        }),
        add_disabled_users: vec!["erin".into()],
        remove_disabled_users: vec!["dave".into()],
        ..Default::default()
    };
    s.apply_delta(&delta).unwrap();
    assert_eq!(s.revision(), 43);
    assert_eq!(s.entry("root", "alice").unwrap().principals, ["alice-only"]);
    assert!(s.entry("app", "alice").is_none());
    let any = &s.revocations().certificates[&Vec::new()];
    assert!(any.key_ids.contains("eve@corp") && any.key_ids.contains("mallory@corp"));
    let ca1 = &s.revocations().certificates[&key_blob(1)];
    assert_eq!(
        ca1.serials.iter().copied().collect::<Vec<_>>(),
        [(100, 200)]
    );
    assert!(ca1.key_ids.is_empty());
    assert!(s.revocations().keys.is_empty());
    assert!(s.is_disabled("erin") && !s.is_disabled("dave"));

    // A delta from another revision is refused and changes nothing.
    let before = s.clone();
    let err = s.apply_delta(&delta).unwrap_err();
    assert_eq!(err, ApplyError::RevisionMismatch { from: 42, have: 43 });
    assert_eq!(s, before);
}

#[test]
fn removing_the_last_revocation_of_a_ca_drops_the_ca() {
    let mut s = State::from_snapshot(sample_view()).unwrap();
    let delta = v1::HostViewDelta {
        from_revision: 42,
        revision: 44,
        remove_revocations: Some(v1::RevocationSet {
            certificates: vec![v1::CaRevocations {
                ca_key: key_blob(1),
                serials: vec![
                    v1::SerialRange { lo: 100, hi: 200 },
                    v1::SerialRange { lo: 500, hi: 500 },
                ],
                key_ids: vec!["bob@corp".into()],
            }],
            keys: vec![],
            sha256: vec![],
        }),
        ..Default::default()
    };
    s.apply_delta(&delta).unwrap();
    assert!(!s.revocations().certificates.contains_key(&key_blob(1)));
}

#[test]
fn delta_that_is_not_forward_is_refused() {
    let mut s = State::from_snapshot(sample_view()).unwrap();
    let delta = v1::HostViewDelta {
        from_revision: 42,
        revision: 42,
        ..Default::default()
    };
    assert_eq!(
        s.apply_delta(&delta).unwrap_err(),
        ApplyError::NotForward { from: 42, to: 42 }
    );
}

#[test]
fn entry_without_account_is_refused() {
    let mut view = sample_view();
    view.principals.push(entry("", "x", &["x"], &["x"]));
    let err = State::from_snapshot(view).unwrap_err();
    assert!(matches!(err, ApplyError::IncompleteEntry { .. }), "{err}");
}

#[test]
fn host_view_round_trips_through_proto() {
    let s = State::from_snapshot(sample_view()).unwrap();
    assert_eq!(State::from_snapshot(s.to_host_view()).unwrap(), s);
}

// --- file round trip -----------------------------------------------------------------

#[test]
fn file_round_trip() {
    let state = State::from_snapshot(sample_view()).unwrap();
    let bytes = encode(&state, NOW).unwrap();
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.state, state);
    assert_eq!(decoded.written_at, NOW);
    // Deterministic: the same state gives the same bytes.
    assert_eq!(encode(&decoded.state, NOW).unwrap(), bytes);
    let f = open(bytes).unwrap();
    assert_eq!(f.revision(), 42);
    assert_eq!(f.written_at(), NOW);
}

/// Approvals ride in the entry record; a view without any is the same bytes as a view
/// written before approvals existed (no tail), and one with them round-trips.
#[test]
fn approvals_round_trip_and_are_absent_without_any() {
    let plain = encode(&State::from_snapshot(sample_view()).unwrap(), NOW).unwrap();
    let mut view = sample_view();
    view.principals[0].approvals = vec![v1::ApprovedGrant {
        grant_id: 7,
        host_group: "web".into(),
        not_after: NOW + 60,
        signatures: vec!["sig-a".into(), "sig-b".into()],
    }];
    let state = State::from_snapshot(view.clone()).unwrap();
    let bytes = encode(&state, NOW).unwrap();
    assert!(bytes.len() > plain.len());
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.state, state);
    assert_eq!(State::from_snapshot(state.to_host_view()).unwrap(), state);
    view.principals[0].approvals.clear();
    assert_eq!(
        encode(&State::from_snapshot(view).unwrap(), NOW).unwrap(),
        plain
    );
}

#[test]
fn empty_state_round_trips_and_answers_nothing() {
    let bytes = encode(&State::new(), NOW).unwrap();
    assert_eq!(decode(&bytes).unwrap().state, State::new());
    let f = open(bytes).unwrap();
    assert_eq!(
        principals_of(&f, "root", "alice@corp").1,
        Matches::default()
    );
    assert_eq!(f.check_certificate(&query("x", 5, 1, 10)).unwrap(), None);
}

#[test]
fn persist_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let krl = dir.path().join("revoked.krl");
    assert_eq!(load(dir.path()).unwrap(), None);
    let state = State::from_snapshot(sample_view()).unwrap();
    let report = state.persist(dir.path(), &krl, NOW).unwrap();
    assert_eq!(load(dir.path()).unwrap(), Some(state));
    let meta = fs::metadata(dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(meta.len(), report.state_bytes);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let krl = signoff_proto::krl::Krl::decode(&fs::read(&krl).unwrap()).unwrap();
    assert_eq!(krl.version(), 42);
    assert!(!krl.is_empty());
}

#[test]
fn load_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(dir.path().join(STATE_FILE), bytes).unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(writer::LoadError::Format { .. })
    ));
}

#[test]
fn contact_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        read_contact(dir.path()),
        Err(ContactError::Missing { .. })
    ));
    record_contact(dir.path(), NOW).unwrap();
    assert_eq!(read_contact(dir.path()).unwrap(), NOW);
    fs::write(dir.path().join(CONTACT_FILE), "yesterday\n").unwrap();
    assert!(matches!(
        read_contact(dir.path()),
        Err(ContactError::Malformed { .. })
    ));
}

// --- lookups -------------------------------------------------------------------------

#[test]
fn lookup_hit() {
    let f = open(sample_bytes()).unwrap();
    let (p, m) = principals_of(&f, "root", "alice@corp");
    assert_eq!(p, ["alice", "admins"]);
    assert_eq!(
        m,
        Matches {
            live: 1,
            expired: 0,
            unapproved: 0,
            held: 0,
        }
    );
    // Any of the user's key IDs.
    assert_eq!(
        principals_of(&f, "root", "alice-laptop").0,
        ["alice", "admins"]
    );
    assert_eq!(principals_of(&f, "app", "alice@corp").0, ["alice"]);
    // A grant with a future not_after is live.
    assert_eq!(principals_of(&f, "app", "carol@corp").0, ["carol"]);
}

#[test]
fn lookup_key_id_shared_by_two_users_gives_both() {
    let f = open(sample_bytes()).unwrap();
    let (mut p, m) = principals_of(&f, "root", "shared");
    p.sort();
    assert_eq!(p, ["s1", "s2"]);
    assert_eq!(m.live, 2);
}

#[test]
fn lookup_miss() {
    let f = open(sample_bytes()).unwrap();
    for (account, key_id) in [
        ("root", "nobody@corp"),
        ("app", "bob@corp"),
        ("postgres", "alice@corp"),
        ("root", ""),
        ("root", "alice@cor"),
        ("roo", "alice@corp"),
    ] {
        assert_eq!(
            principals_of(&f, account, key_id),
            (vec![], Matches::default()),
            "{account} {key_id}"
        );
    }
}

#[test]
fn lookup_expired_grant() {
    let f = open(sample_bytes()).unwrap();
    assert_eq!(
        principals_of(&f, "root", "carol@corp"),
        (
            vec![],
            Matches {
                live: 0,
                expired: 1,
                unapproved: 0,
                held: 0,
            }
        )
    );
    // not_after is exclusive: at not_after itself the grant is over.
    let mut out = Vec::new();
    let m = f
        .principals("app", "carol@corp", NOW + 3600, &mut out)
        .unwrap();
    assert_eq!((out.len(), m.expired), (0, 1));
}

#[test]
fn lookup_disabled_user_is_not_indexed() {
    let f = open(sample_bytes()).unwrap();
    assert_eq!(
        principals_of(&f, "root", "dave@corp"),
        (vec![], Matches::default())
    );
}

#[test]
fn not_revoked() {
    let f = open(sample_bytes()).unwrap();
    assert_eq!(
        f.check_certificate(&query("alice@corp", 99, 1, 10))
            .unwrap(),
        None
    );
    assert_eq!(
        f.check_certificate(&query("alice@corp", 201, 1, 10))
            .unwrap(),
        None
    );
    // Serial 0 is never revoked by serial, even inside a range starting at 0.
    assert_eq!(
        f.check_certificate(&query("alice@corp", 0, 2, 10)).unwrap(),
        None
    );
}

#[test]
fn revoked_key_id_for_any_ca() {
    let f = open(sample_bytes()).unwrap();
    for ca in [1, 2] {
        assert_eq!(
            f.check_certificate(&query("mallory@corp", 7, ca, 10))
                .unwrap(),
            Some(Revoked::KeyId { any_ca: true })
        );
    }
}

#[test]
fn revoked_key_id_for_one_ca() {
    let f = open(sample_bytes()).unwrap();
    assert_eq!(
        f.check_certificate(&query("bob@corp", 7, 1, 11)).unwrap(),
        Some(Revoked::KeyId { any_ca: false })
    );
    // Another CA's certificate with that key ID is not revoked.
    assert_eq!(
        f.check_certificate(&query("bob@corp", 7, 2, 11)).unwrap(),
        None
    );
}

#[test]
fn revoked_serial_range() {
    let f = open(sample_bytes()).unwrap();
    for serial in [100, 150, 200, 500] {
        assert_eq!(
            f.check_certificate(&query("alice@corp", serial, 1, 10))
                .unwrap(),
            Some(Revoked::Serial { any_ca: false }),
            "{serial}"
        );
        // Other CA, same serial: not revoked.
        assert_eq!(
            f.check_certificate(&query("alice@corp", serial, 2, 10))
                .unwrap(),
            None
        );
    }
    for serial in [99, 201, 499, 501] {
        assert_eq!(
            f.check_certificate(&query("alice@corp", serial, 1, 10))
                .unwrap(),
            None
        );
    }
    // The any-CA range 0-3 revokes 1-3 under every CA.
    assert_eq!(
        f.check_certificate(&query("alice@corp", 3, 2, 10)).unwrap(),
        Some(Revoked::Serial { any_ca: true })
    );
}

#[test]
fn revoked_key_fingerprint() {
    let f = open(sample_bytes()).unwrap();
    // Key 20 is listed as a blob, key 21 by its SHA-256.
    for key in [20, 21] {
        assert_eq!(
            f.check_certificate(&query("alice@corp", 5, 1, key))
                .unwrap(),
            Some(Revoked::Key)
        );
        assert!(f.is_key_revoked(&key_fingerprint(&key_blob(key))).unwrap());
    }
    assert!(!f.is_key_revoked(&key_fingerprint(&key_blob(10))).unwrap());
}

#[test]
fn revoked_ca_fingerprint() {
    let f = open(sample_bytes()).unwrap();
    assert_eq!(
        f.check_certificate(&query("alice@corp", 5, 20, 10))
            .unwrap(),
        Some(Revoked::CaKey)
    );
}

#[test]
fn authorized_keys_lookup() {
    let f = open(sample_bytes()).unwrap();
    let mut keys = Vec::new();
    let m = f
        .authorized_keys("root", NOW, |k| keys.push(k.to_owned()))
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].ends_with("alice@laptop") && keys[1].ends_with(" bob"));
    // alice, bob, the two shared ones live; carol expired; dave disabled.
    assert_eq!(
        m,
        Matches {
            live: 4,
            expired: 1,
            unapproved: 0,
            held: 0,
        }
    );
}

#[test]
fn many_entries_lookups() {
    // Enough entries and revocations for multi-block tables and fence searches.
    let mut view = v1::HostView {
        revision: 1,
        ..Default::default()
    };
    let mut revocations = v1::RevocationSet::default();
    let mut ca = v1::CaRevocations {
        ca_key: key_blob(1),
        ..Default::default()
    };
    for i in 0..20_000u64 {
        let user = format!("user{i}");
        view.principals.push(entry(
            &format!("acct{}", i % 7),
            &user,
            &[&format!("{user}@corp")],
            &[&user],
        ));
        if i % 3 == 0 {
            ca.key_ids.push(format!("revoked{i}"));
            ca.serials.push(v1::SerialRange {
                lo: i * 10 + 1,
                hi: i * 10 + 5,
            });
        }
    }
    revocations.certificates.push(ca);
    view.revocations = Some(revocations);
    let state = State::from_snapshot(view).unwrap();
    let f = open(encode(&state, NOW).unwrap()).unwrap();
    for i in (0..20_000u64).step_by(997) {
        let user = format!("user{i}");
        let (p, _) = principals_of(&f, &format!("acct{}", i % 7), &format!("{user}@corp"));
        assert_eq!(p, std::slice::from_ref(&user));
        let (p, _) = principals_of(&f, &format!("acct{}", (i + 1) % 7), &format!("{user}@corp"));
        assert!(p.is_empty());
        let revoked = i % 3 == 0;
        let id = format!("revoked{i}");
        assert_eq!(
            f.check_certificate(&query(&id, 0, 1, 10))
                .unwrap()
                .is_some(),
            revoked,
            "{id}"
        );
        assert_eq!(
            f.check_certificate(&query("x", i * 10 + 3, 1, 10))
                .unwrap()
                .is_some(),
            revoked,
            "serial {}",
            i * 10 + 3
        );
        assert_eq!(
            f.check_certificate(&query("x", i * 10 + 7, 1, 10)).unwrap(),
            None
        );
    }
}

// --- corruption: each refused with its own error -------------------------------------

fn section_of(bytes: &[u8], id: SectionId) -> (usize, usize) {
    let at = 40 + id as usize * 24;
    let off = format::le_u64(&bytes[at..]) as usize;
    let len = format::le_u64(&bytes[at + 8..]) as usize;
    (off, len)
}

#[test]
fn corrupt_truncated_file() {
    let mut bytes = sample_bytes();
    let full = bytes.len() as u64;
    bytes.truncate(bytes.len() - 10);
    let err = open(bytes).unwrap_err();
    assert!(
        matches!(err, FormatError::Truncated { expected, actual } if expected == full && actual == full - 10),
        "{err}"
    );
    // Shorter than a header.
    let err = open(sample_bytes()[..100].to_vec()).unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
    // Empty.
    let err = open(Vec::new()).unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
}

#[test]
fn corrupt_trailing_data() {
    let mut bytes = sample_bytes();
    bytes.push(0);
    assert!(matches!(
        open(bytes).unwrap_err(),
        FormatError::TrailingData { .. }
    ));
}

#[test]
fn corrupt_flipped_byte_in_entry_record() {
    let mut bytes = sample_bytes();
    let (off, _) = section_of(&bytes, SectionId::Entries);
    // The first record (("app", "alice")): flip a byte of its account name.
    bytes[off + 8 + 17 + 4] ^= 0x01;
    let f = open(bytes).unwrap();
    let err = f
        .principals("app", "alice@corp", NOW, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::RecordChecksum {
                section: "entries",
                offset: 0
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_flipped_byte_in_payload_record() {
    let mut bytes = sample_bytes();
    let (off, _) = section_of(&bytes, SectionId::Payloads);
    bytes[off + 12] ^= 0x20;
    let f = open(bytes).unwrap();
    let err = f
        .principals("app", "alice@corp", NOW, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::RecordChecksum {
                section: "payloads",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_flipped_byte_in_index_block() {
    let mut bytes = sample_bytes();
    let (off, len) = section_of(&bytes, SectionId::KeyIdIndex);
    // Last byte of the rows of the (single) block, just before its CRC.
    bytes[off + len - 5] ^= 0x01;
    let f = open(bytes).unwrap();
    let err = f
        .principals("root", "alice@corp", NOW, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::BlockChecksum {
                section: "key ID index",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_flipped_byte_in_revocation_table() {
    let mut bytes = sample_bytes();
    let (off, len) = section_of(&bytes, SectionId::RevokedKeyIds);
    bytes[off + len - 5] ^= 0x01;
    let f = open(bytes).unwrap();
    let err = f
        .check_certificate(&query("mallory@corp", 7, 1, 10))
        .unwrap_err();
    assert!(matches!(err, FormatError::BlockChecksum { .. }), "{err}");
}

#[test]
fn corrupt_record_offset_out_of_bounds() {
    // A record whose offset or length leaves its section is refused before its checksum.
    let bytes = sample_bytes();
    let (off, _) = section_of(&bytes, SectionId::Entries);
    let small = format::Section {
        offset: off as u64,
        len: 20,
        count: 1,
    };
    for offset in [16, 20, 1 << 40] {
        let err = format::read_record(&bytes, SectionId::Entries, small, offset).unwrap_err();
        assert!(
            matches!(err, FormatError::RecordOutOfBounds { .. }),
            "{err}"
        );
    }
}

#[test]
fn corrupt_flipped_byte_in_header() {
    let mut bytes = sample_bytes();
    // The revision.
    bytes[24] ^= 0x01;
    assert!(matches!(
        open(bytes).unwrap_err(),
        FormatError::HeaderChecksum
    ));
    let mut bytes = sample_bytes();
    // A section offset.
    bytes[40 + 3 * 24] ^= 0x01;
    assert!(matches!(
        open(bytes).unwrap_err(),
        FormatError::HeaderChecksum
    ));
}

#[test]
fn corrupt_wrong_magic() {
    let mut bytes = sample_bytes();
    bytes[0] = b'X';
    assert!(matches!(open(bytes).unwrap_err(), FormatError::BadMagic));
    // A short file that is not ours at all is "bad magic", not "truncated".
    assert!(matches!(
        open(b"ssh-ed25519 AAAA".to_vec()).unwrap_err(),
        FormatError::BadMagic
    ));
}

#[test]
fn corrupt_wrong_version() {
    let mut bytes = sample_bytes();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        open(bytes).unwrap_err(),
        FormatError::UnsupportedVersion { found: 2 }
    ));
}

#[test]
fn corrupt_layout_with_valid_header_checksum() {
    // A header whose CRC is right but whose sections overlap is still refused.
    let mut bytes = sample_bytes();
    let at = 40 + SectionId::Payloads as usize * 24;
    let off = format::le_u64(&bytes[at..]);
    bytes[at..at + 8].copy_from_slice(&(off - 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..HEADER_LEN - 4]);
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        open(bytes).unwrap_err(),
        FormatError::BadLayout(_)
    ));
}

#[test]
fn every_single_byte_flip_is_caught_by_a_full_decode() {
    let bytes = sample_bytes();
    for i in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        assert!(decode(&b).is_err(), "flip at {i} of {}", bytes.len());
    }
}

#[test]
fn no_single_byte_flip_changes_an_answer() {
    // Whatever byte is flipped, each query either gives the right answer or an error.
    let bytes = sample_bytes();
    let good = open(bytes.clone()).unwrap();
    let want_p = principals_of(&good, "root", "alice@corp");
    let q = query("bob@corp", 150, 1, 11);
    let want_r = good.check_certificate(&q).unwrap();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x04;
        let Ok(f) = open(b) else { continue };
        let mut out = Vec::new();
        if let Ok(m) = f.principals("root", "alice@corp", NOW, &mut out) {
            assert_eq!((out, m), want_p, "flip at {i}");
        }
        if let Ok(r) = f.check_certificate(&q) {
            assert_eq!(r, want_r, "flip at {i}");
        }
    }
}
