use proptest::prelude::*;

use super::encode::plan_for_tests;
use super::serials::{self, SerialRange};
use super::*;

const LIST: u8 = CERT_SERIAL_LIST;
const RANGE: u8 = CERT_SERIAL_RANGE;
const BITMAP: u8 = CERT_SERIAL_BITMAP;

fn ed25519(byte: u8) -> KeyData {
    KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([byte; 32]))
}

fn runs(pairs: &[(u64, u64)]) -> Vec<SerialRange> {
    serials::normalize(
        pairs
            .iter()
            .map(|&(lo, hi)| SerialRange { lo, hi })
            .collect(),
    )
}

fn krl_with_serials(pairs: &[(u64, u64)]) -> Krl {
    let mut b = KrlBuilder::new();
    for &(lo, hi) in pairs {
        b.revoke_serial_range(&CaScope::key(&ed25519(1)), lo, hi)
            .unwrap();
    }
    b.build()
}

/// Every bitmap subsection in an encoded KRL, as (offset, mpint length).
fn bitmaps(bytes: &[u8]) -> Vec<(u64, usize)> {
    let mut r = wire::Reader::new(bytes);
    r.bytes(8 + 4 + 8 + 8 + 8, "header").unwrap();
    r.string("reserved").unwrap();
    r.string("comment").unwrap();
    let mut out = Vec::new();
    while !r.is_empty() {
        let kind = r.u8("type").unwrap();
        let mut s = r.sub("section").unwrap();
        if kind != SECTION_CERTIFICATES {
            continue;
        }
        s.string("ca").unwrap();
        s.string("reserved").unwrap();
        while !s.is_empty() {
            let sub_kind = s.u8("type").unwrap();
            let mut sub = s.sub("sub").unwrap();
            if sub_kind == BITMAP {
                let off = sub.u64("off").unwrap();
                out.push((off, sub.string("bits").unwrap().len()));
            }
        }
    }
    out
}

#[test]
fn normalize_merges_overlapping_and_adjacent_runs() {
    assert_eq!(
        runs(&[
            (5, 9),
            (1, 1),
            (2, 3),
            (10, 10),
            (20, 30),
            (25, 26),
            (u64::MAX, u64::MAX)
        ]),
        vec![
            SerialRange { lo: 1, hi: 3 },
            SerialRange { lo: 5, hi: 10 },
            SerialRange { lo: 20, hi: 30 },
            SerialRange {
                lo: u64::MAX,
                hi: u64::MAX
            },
        ]
    );
}

#[test]
fn contains_checks_run_bounds() {
    let r = runs(&[(5, 9), (20, 20)]);
    for (s, want) in [
        (4, false),
        (5, true),
        (9, true),
        (10, false),
        (20, true),
        (21, false),
    ] {
        assert_eq!(serials::contains(&r, s), want, "serial {s}");
    }
    assert!(!serials::contains(&[], 1));
}

#[test]
fn empty_krl_round_trips_and_has_fixed_header() {
    let krl = KrlBuilder::new().build();
    let bytes = krl.encode();
    assert_eq!(&bytes[..8], MAGIC);
    // magic, format, version, date, flags, empty reserved, empty comment.
    assert_eq!(bytes.len(), 8 + 4 + 8 + 8 + 8 + 4 + 4);
    assert_eq!(Krl::decode(&bytes).unwrap(), krl);
}

#[test]
fn header_fields_round_trip() {
    let mut b = KrlBuilder::new();
    b.version(42)
        .generated_date(1_700_000_000)
        .comment(b"fleet\0 krl");
    let krl = b.build();
    let back = Krl::decode(&krl.encode()).unwrap();
    assert_eq!(back.version(), 42);
    assert_eq!(back.generated_date(), 1_700_000_000);
    assert_eq!(back.comment(), b"fleet krl");
}

#[test]
fn isolated_serials_share_one_list() {
    let plan = plan_for_tests(&runs(&[(1, 1), (1000, 1000), (1_000_000, 1_000_001)]));
    assert!(plan.iter().all(|p| p.0 == LIST), "{plan:?}");
}

#[test]
fn long_run_is_a_range() {
    let plan = plan_for_tests(&runs(&[(100, 1_000_000)]));
    assert_eq!(plan, vec![(RANGE, 0, 0)]);
}

#[test]
fn dense_serials_become_a_bitmap() {
    let pairs: Vec<(u64, u64)> = (0..100).map(|i| (1 + i * 3, 1 + i * 3)).collect();
    let plan = plan_for_tests(&runs(&pairs));
    assert_eq!(plan, vec![(BITMAP, 0, 99)]);
}

#[test]
fn bitmap_never_exceeds_the_parser_cap() {
    // One serial every 10 up to 300,000: ssh-keygen's greedy encoder makes this a single
    // 30,000-byte bitmap that sshd cannot load.
    let pairs: Vec<(u64, u64)> = (0..30_000).map(|i| (1 + i * 10, 1 + i * 10)).collect();
    let krl = krl_with_serials(&pairs);
    let bytes = krl.encode();
    let maps = bitmaps(&bytes);
    assert!(maps.len() > 1);
    for (_, len) in &maps {
        assert!(*len <= 2049, "bitmap of {len} bytes");
    }
    assert_eq!(Krl::decode(&bytes).unwrap(), krl);
}

#[test]
fn bitmap_at_exactly_the_cap_loads() {
    // Serials 1 and 16,384 span 16,384 bits: top bit index 16,383, a 2049-byte mpint with
    // a leading zero, which OpenSSH accepts.
    let pairs: Vec<(u64, u64)> = (0..=2048).map(|i| (1 + i * 8, 1 + i * 8)).collect();
    let mut with_top = pairs.clone();
    with_top.push((16_384, 16_384));
    let krl = krl_with_serials(&with_top);
    let bytes = krl.encode();
    for (_, len) in bitmaps(&bytes) {
        assert!(len <= 2049);
    }
    assert_eq!(Krl::decode(&bytes).unwrap(), krl);
}

#[test]
fn encoding_is_deterministic_whatever_the_insertion_order() {
    let ca = CaScope::key(&ed25519(7));
    let mut a = KrlBuilder::new();
    let mut b = KrlBuilder::new();
    let items: Vec<u64> = (1..500).map(|i| i * 7919 % 10_007).collect();
    for &s in &items {
        a.revoke_serial(&ca, s).unwrap();
    }
    for &s in items.iter().rev() {
        b.revoke_serial(&ca, s).unwrap();
        b.revoke_serial(&ca, s).unwrap();
    }
    a.revoke_key_id(&CaScope::Any, b"alice").unwrap();
    a.revoke_key_id(&CaScope::Any, b"bob").unwrap();
    b.revoke_key_id(&CaScope::Any, b"bob").unwrap();
    b.revoke_key_id(&CaScope::Any, b"alice").unwrap();
    assert_eq!(a.build().encode(), b.build().encode());
}

#[test]
fn builder_rejects_serial_zero_inverted_ranges_and_nul_ids() {
    let mut b = KrlBuilder::new();
    assert_eq!(
        b.revoke_serial(&CaScope::Any, 0).err(),
        Some(RevokeError::SerialZero)
    );
    assert_eq!(
        b.revoke_serial_range(&CaScope::Any, 9, 3).err(),
        Some(RevokeError::EmptyRange { lo: 9, hi: 3 })
    );
    assert_eq!(
        b.revoke_key_id(&CaScope::Any, b"a\0b").err(),
        Some(RevokeError::NulInKeyId)
    );
}

#[test]
fn check_key_matches_each_plain_key_rule() {
    let (k1, k2, k3, k4) = (ed25519(1), ed25519(2), ed25519(3), ed25519(4));
    let mut b = KrlBuilder::new();
    b.revoke_key(&k1)
        .revoke_sha1(sha1_of(&k2))
        .revoke_sha256(sha256_of(&k3));
    let krl = Krl::decode(&b.build().encode()).unwrap();
    assert_eq!(krl.check_key(&k1), Some(Revocation::ExplicitKey));
    assert_eq!(krl.check_key(&k2), Some(Revocation::Sha1));
    assert_eq!(krl.check_key(&k3), Some(Revocation::Sha256));
    assert_eq!(krl.check_key(&k4), None);
}

// ---- decoder rejections, one test each --------------------------------------------------

/// A header with no sections.
fn header() -> Vec<u8> {
    KrlBuilder::new().build().encode()
}

fn with_section(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = header();
    out.push(kind);
    wire::put_string(&mut out, body);
    out
}

fn cert_section(ca: &[u8], subsections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    wire::put_string(&mut body, ca);
    wire::put_string(&mut body, &[]);
    for (kind, data) in subsections {
        body.push(*kind);
        wire::put_string(&mut body, data);
    }
    with_section(SECTION_CERTIFICATES, &body)
}

fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn kind_of(bytes: &[u8]) -> DecodeErrorKind {
    Krl::decode(bytes).unwrap_err().kind
}

#[test]
fn rejects_bad_magic() {
    let mut b = header();
    b[0] = b'X';
    assert_eq!(kind_of(&b), DecodeErrorKind::BadMagic);
    assert_eq!(kind_of(b"SSHK"), DecodeErrorKind::BadMagic);
}

#[test]
fn rejects_unknown_format_version() {
    let mut b = header();
    b[11] = 2;
    let err = Krl::decode(&b).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::UnsupportedFormatVersion(2));
    assert_eq!(err.offset, 8);
}

#[test]
fn rejects_every_truncation() {
    let mut b = KrlBuilder::new();
    b.revoke_serial(&CaScope::key(&ed25519(1)), 5).unwrap();
    b.revoke_key_id(&CaScope::Any, b"id").unwrap();
    b.revoke_key(&ed25519(9)).revoke_sha256([1; 32]);
    let bytes = b.build().encode();
    // A prefix ending exactly after the header or a section is a valid, smaller KRL.
    let mut boundaries = vec![header().len()];
    let mut r = wire::Reader::new(&bytes);
    r.bytes(header().len(), "header").unwrap();
    while !r.is_empty() {
        r.u8("type").unwrap();
        r.string("section").unwrap();
        boundaries.push(r.offset());
    }
    assert_eq!(boundaries.len(), 5);
    for len in 0..bytes.len() {
        let loaded = Krl::decode(&bytes[..len]).is_ok();
        assert_eq!(loaded, boundaries.contains(&len), "prefix of {len} bytes");
    }
}

#[test]
fn rejects_trailing_bytes_in_a_section() {
    let mut body = Vec::new();
    wire::put_string(&mut body, &[7; 32]);
    body.push(0);
    let err = Krl::decode(&with_section(SECTION_FINGERPRINT_SHA256, &body)).unwrap_err();
    assert!(
        matches!(err.kind, DecodeErrorKind::Truncated { .. }),
        "{err}"
    );
}

#[test]
fn rejects_trailing_bytes_in_a_range_subsection() {
    let b = cert_section(&[], &[(RANGE, u64s(&[1, 5, 9]))]);
    assert!(matches!(
        kind_of(&b),
        DecodeErrorKind::TrailingData { bytes: 8, .. }
    ));
}

#[test]
fn rejects_unknown_section() {
    assert_eq!(
        kind_of(&with_section(6, &[])),
        DecodeErrorKind::UnknownSection(6)
    );
}

#[test]
fn rejects_unknown_certificate_subsection() {
    let b = cert_section(&[], &[(0x24, vec![])]);
    assert_eq!(kind_of(&b), DecodeErrorKind::UnknownCertSubsection(0x24));
}

#[test]
fn rejects_serial_zero_in_a_list() {
    let b = cert_section(&[], &[(LIST, u64s(&[3, 0]))]);
    assert_eq!(kind_of(&b), DecodeErrorKind::SerialZero);
}

#[test]
fn rejects_a_range_starting_at_zero() {
    let b = cert_section(&[], &[(RANGE, u64s(&[0, 10]))]);
    assert_eq!(kind_of(&b), DecodeErrorKind::SerialZero);
}

#[test]
fn rejects_an_inverted_range() {
    let b = cert_section(&[], &[(RANGE, u64s(&[10, 9]))]);
    assert_eq!(
        kind_of(&b),
        DecodeErrorKind::InvertedRange { lo: 10, hi: 9 }
    );
}

#[test]
fn rejects_a_bitmap_revoking_serial_zero() {
    let mut data = u64s(&[0]);
    wire::put_string(&mut data, &[0x01]);
    let b = cert_section(&[], &[(BITMAP, data)]);
    assert_eq!(kind_of(&b), DecodeErrorKind::SerialZero);
}

#[test]
fn rejects_a_negative_bitmap() {
    let mut data = u64s(&[1]);
    wire::put_string(&mut data, &[0x80]);
    let b = cert_section(&[], &[(BITMAP, data)]);
    assert_eq!(kind_of(&b), DecodeErrorKind::NegativeBitmap);
}

#[test]
fn rejects_a_bitmap_over_the_cap() {
    let mut data = u64s(&[1]);
    let mut bits = vec![0u8; 2049];
    bits[0] = 0x01; // top bit index 16,384
    wire::put_string(&mut data, &bits);
    let b = cert_section(&[], &[(BITMAP, data)]);
    assert_eq!(kind_of(&b), DecodeErrorKind::BitmapTooLarge { bytes: 2049 });
}

#[test]
fn accepts_a_bitmap_with_leading_zeros_as_openssh_does() {
    let mut data = u64s(&[100]);
    wire::put_string(&mut data, &[0x00, 0x00, 0x05]);
    let krl = Krl::decode(&cert_section(&[], &[(BITMAP, data)])).unwrap();
    let (_, certs) = krl.certs().next().unwrap();
    assert_eq!(
        certs.serials(),
        &[
            SerialRange { lo: 100, hi: 100 },
            SerialRange { lo: 102, hi: 102 }
        ]
    );
}

#[test]
fn rejects_a_bitmap_that_wraps() {
    let mut data = u64s(&[u64::MAX]);
    wire::put_string(&mut data, &[0x02]);
    let b = cert_section(&[], &[(BITMAP, data)]);
    assert_eq!(kind_of(&b), DecodeErrorKind::BitmapWraps);
}

#[test]
fn rejects_unsorted_hashes() {
    let mut body = Vec::new();
    wire::put_string(&mut body, &[2; 20]);
    wire::put_string(&mut body, &[1; 20]);
    assert_eq!(
        kind_of(&with_section(SECTION_FINGERPRINT_SHA1, &body)),
        DecodeErrorKind::UnsortedHashes { algorithm: "SHA1" }
    );
}

#[test]
fn rejects_a_hash_of_the_wrong_length() {
    let mut body = Vec::new();
    wire::put_string(&mut body, &[2; 20]);
    assert_eq!(
        kind_of(&with_section(SECTION_FINGERPRINT_SHA256, &body)),
        DecodeErrorKind::BadHashLength {
            algorithm: "SHA256",
            expected: 32,
            got: 20
        }
    );
}

#[test]
fn rejects_a_nul_in_a_key_id() {
    let mut ids = Vec::new();
    wire::put_string(&mut ids, b"al\0ice");
    let b = cert_section(&[], &[(CERT_KEY_ID, ids)]);
    assert!(matches!(kind_of(&b), DecodeErrorKind::NulInString { .. }));
}

#[test]
fn rejects_an_unparsable_ca_key() {
    let b = cert_section(b"not a key", &[]);
    assert!(matches!(kind_of(&b), DecodeErrorKind::BadCaKey(_)));
}

fn extension_body(name: &[u8], critical: bool) -> Vec<u8> {
    let mut body = Vec::new();
    wire::put_string(&mut body, name);
    body.push(u8::from(critical));
    wire::put_string(&mut body, b"data");
    body
}

#[test]
fn rejects_an_unknown_critical_extension() {
    let b = with_section(SECTION_EXTENSION, &extension_body(b"x@example.com", true));
    assert_eq!(
        kind_of(&b),
        DecodeErrorKind::CriticalExtension("x@example.com".into())
    );
    let c = cert_section(
        &[],
        &[(CERT_EXTENSION, extension_body(b"y@example.com", true))],
    );
    assert_eq!(
        kind_of(&c),
        DecodeErrorKind::CriticalExtension("y@example.com".into())
    );
}

#[test]
fn ignores_an_unknown_non_critical_extension() {
    let b = with_section(SECTION_EXTENSION, &extension_body(b"x@example.com", false));
    assert!(Krl::decode(&b).unwrap().is_empty());
    let c = cert_section(
        &[],
        &[(CERT_EXTENSION, extension_body(b"y@example.com", false))],
    );
    assert!(Krl::decode(&c).unwrap().is_empty());
}

#[test]
fn skips_signature_sections_but_nothing_may_follow_them() {
    let mut b = with_section(SECTION_SIGNATURE, b"signing key");
    wire::put_string(&mut b, b"signature");
    assert!(Krl::decode(&b).unwrap().is_empty());
    b.push(SECTION_FINGERPRINT_SHA1);
    wire::put_string(&mut b, &[]);
    assert_eq!(
        kind_of(&b),
        DecodeErrorKind::SectionAfterSignature(SECTION_FINGERPRINT_SHA1)
    );
}

#[test]
fn error_offsets_point_into_the_file() {
    let b = cert_section(&[], &[(LIST, u64s(&[3, 0]))]);
    let err = Krl::decode(&b).unwrap_err();
    // The zero is the last eight bytes of the file.
    assert_eq!(err.offset, b.len() - 8);
    assert!(
        err.to_string()
            .starts_with(&format!("at byte {}: ", b.len() - 8))
    );
}

// ---- properties -------------------------------------------------------------------------

/// Exhaustive minimum over every partition of `runs`, for checking the fast program.
fn brute_force_cost(runs: &[SerialRange]) -> u64 {
    fn go(
        runs: &[SerialRange],
        i: usize,
        used_list: bool,
        memo: &mut Vec<[Option<u64>; 2]>,
    ) -> u64 {
        if i == runs.len() {
            return if used_list { 5 } else { 0 };
        }
        if let Some(c) = memo[i][usize::from(used_list)] {
            return c;
        }
        let r = runs[i];
        let mut best = 21 + go(runs, i + 1, used_list, memo);
        best = best.min(
            r.len()
                .saturating_mul(8)
                .saturating_add(go(runs, i + 1, true, memo)),
        );
        for j in i..runs.len() {
            let span = runs[j].hi - r.lo + 1;
            if span > MAX_BITMAP_SPAN {
                break;
            }
            best = best.min(18 + span / 8 + go(runs, j + 1, used_list, memo));
        }
        memo[i][usize::from(used_list)] = Some(best);
        best
    }
    go(runs, 0, false, &mut vec![[None; 2]; runs.len()])
}

fn serial_sections_len(krl: &Krl) -> usize {
    // Header of a KRL with one empty-CA certificates section and no key IDs.
    let empty_section = 8 + 4 + 8 + 8 + 8 + 4 + 4 + 1 + 4 + 4 + 4;
    krl.encode().len() - empty_section
}

fn arb_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    let cluster = (1u64..40_000, 0u64..40).prop_map(|(lo, len)| (lo, lo + len));
    let sparse = (1u64..u64::MAX / 2, 0u64..3).prop_map(|(lo, len)| (lo, lo + len));
    prop::collection::vec(prop_oneof![4 => cluster, 1 => sparse], 0..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_preserves_the_set(pairs in arb_ranges(), ids in prop::collection::vec("[a-z@.]{1,12}", 0..8)) {
        let mut b = KrlBuilder::new();
        for &(lo, hi) in &pairs {
            b.revoke_serial_range(&CaScope::Any, lo, hi).unwrap();
            b.revoke_serial_range(&CaScope::key(&ed25519(3)), hi, hi).unwrap();
        }
        for id in &ids {
            b.revoke_key_id(&CaScope::key(&ed25519(4)), id.as_bytes()).unwrap();
        }
        let krl = b.build();
        let bytes = krl.encode();
        let back = Krl::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &krl);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn encoder_is_optimal_under_the_cap(pairs in arb_ranges()) {
        let mut b = KrlBuilder::new();
        for &(lo, hi) in &pairs {
            b.revoke_serial_range(&CaScope::Any, lo, hi).unwrap();
        }
        let krl = b.build();
        let Some((_, certs)) = krl.certs().next() else { return Ok(()) };
        prop_assert_eq!(serial_sections_len(&krl) as u64, brute_force_cost(certs.serials()));
        for (_, len) in bitmaps(&krl.encode()) {
            prop_assert!(len <= 2049);
        }
    }

    #[test]
    fn membership_matches_the_input(pairs in arb_ranges(), probes in prop::collection::vec(1u64..40_100, 50)) {
        let normalized = runs(&pairs);
        let krl = Krl::decode(&krl_with_serials(&pairs).encode()).unwrap();
        let decoded = krl.certs().next().map(|(_, r)| r.serials().to_vec()).unwrap_or_default();
        for p in probes {
            let want = pairs.iter().any(|&(lo, hi)| lo <= p && p <= hi);
            prop_assert_eq!(serials::contains(&decoded, p), want);
            prop_assert_eq!(serials::contains(&normalized, p), want);
        }
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Krl::decode(&bytes);
        let mut with_header = header();
        with_header.extend_from_slice(&bytes);
        let _ = Krl::decode(&with_header);
    }
}
