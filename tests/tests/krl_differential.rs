//! Differential tests of the KRL codec against OpenSSH's own.
//!
//! Each round draws a random revocation set (the seed is printed; `SIGNOFF_TEST_SEED`
//! replays it), writes it as `ssh-keygen -k` spec files, and builds two KRLs from the same
//! files: OURS with `signoff-agent krl build`, THEIRS with `ssh-keygen -k`. Then, for every
//! key and certificate of the round's universe, revoked or not:
//!
//! - `ssh-keygen -Q -f THEIRS` (the oracle) agrees with an independent model of the spec;
//! - `ssh-keygen -Q -f OURS` and `signoff-agent krl check -f OURS` agree with the oracle;
//! - `signoff-agent krl check -f THEIRS` agrees too, and `krl dump -f THEIRS` works: our
//!   decoder reads what ssh-keygen writes;
//! - OURS is no larger than THEIRS.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, RngCore as _};
use signoff_tests::artifacts_dir;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{
    CaArg, Check, Verdict, agent_build, agent_check, agent_dump, ssh_keygen_build, ssh_keygen_check,
};
use signoff_tests::seed::seeded_rng;
use tempfile::TempDir;

/// Certificate authorities: three that sign and are revoked by serial and key ID, and a
/// fourth whose own key every round revokes (so all its certificates are revoked).
const CA_COUNT: usize = 4;
const REVOKED_CA: usize = 3;

/// User keys: the last one is never revoked, so most certificates are decided by serial
/// and key ID rather than by their key.
const USER_KEYS: [KeyType; 8] = [
    KeyType::Ed25519,
    KeyType::Ed25519,
    KeyType::Ed25519,
    KeyType::Ecdsa256,
    KeyType::Ecdsa384,
    KeyType::Rsa2048,
    KeyType::Ed25519,
    KeyType::Ed25519,
];
const CLEAN_USER: usize = USER_KEYS.len() - 1;

/// Key IDs certificates carry; a round revokes a few of them.
const KEY_IDS: [&str; 10] = [
    "alice",
    "Alice",
    "bob",
    "carol@example.com",
    "deploy-bot",
    "id with spaces",
    "josé",
    "ops:oncall",
    "svc/backup",
    "x",
];

/// The keys and CAs every round of one test uses.
struct Fixture {
    dir: TempDir,
    cas: Vec<KeyPair>,
    users: Vec<KeyPair>,
}

impl Fixture {
    fn new(name: &str) -> Result<Fixture> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("krl-diff-{name}-"))
            .tempdir()?;
        let cas = (0..CA_COUNT)
            .map(|i| KeyPair::generate(dir.path(), &format!("ca{i}"), KeyType::Ed25519))
            .collect::<Result<Vec<_>>>()?;
        let users = USER_KEYS
            .iter()
            .enumerate()
            .map(|(i, &kind)| KeyPair::generate(dir.path(), &format!("u{i}"), kind))
            .collect::<Result<Vec<_>>>()?;
        Ok(Fixture { dir, cas, users })
    }

    fn key(&self, key: KeyRef) -> &KeyPair {
        match key {
            KeyRef::Ca(i) => &self.cas[i],
            KeyRef::User(i) => &self.users[i],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyRef {
    Ca(usize),
    User(usize),
}

/// Which certificates `serial:` and `id:` lines apply to (`-s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No `-s`: the spec has no `serial:` or `id:` lines.
    Absent,
    /// `-s caN.pub`.
    Ca(usize),
    /// `-s none`.
    Wildcard,
}

impl Scope {
    /// The model's key for revocations of this scope (`None` = any CA).
    fn model_key(self) -> Option<usize> {
        match self {
            Scope::Ca(i) => Some(i),
            Scope::Absent | Scope::Wildcard => None,
        }
    }
}

/// How a round's revoked serials are distributed.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Random 64-bit serials and a few short ranges.
    Sparse,
    /// Clusters of a few thousand serials, each filled at a random density.
    DenseClusters,
    /// Long ranges, some adjacent or overlapping, with single serials near their ends.
    LongRanges,
    /// Ranges and serials at the top of the serial space, and around 2^63.
    NearMax,
    /// Two clusters of 10,000 to 40,000 serials each: wider than one bitmap may be.
    WideClusters,
    /// A little of everything.
    Mixed,
    /// No serials at all.
    None,
}

/// How a plain key is revoked in the spec.
#[derive(Debug, Clone, Copy)]
enum KeyLine {
    /// `key: PUBKEY` (explicit key section).
    Explicit,
    /// `sha1: PUBKEY`.
    Sha1,
    /// `sha256: PUBKEY`.
    Sha256,
    /// `hash: SHA256:…`.
    Hash,
    /// A bare public key line (SHA-1 in OpenSSH 9.2).
    Bare,
}

const KEY_LINES: [KeyLine; 5] = [
    KeyLine::Explicit,
    KeyLine::Sha1,
    KeyLine::Sha256,
    KeyLine::Hash,
    KeyLine::Bare,
];

/// What the spec revokes, computed independently of both encoders.
#[derive(Debug, Default)]
struct Model {
    /// Revoked serial ranges per CA index; `None` = certificates of any CA.
    serials: HashMap<Option<usize>, Vec<(u64, u64)>>,
    key_ids: HashMap<Option<usize>, HashSet<String>>,
    keys: HashSet<KeyRef>,
}

impl Model {
    fn revoke_serials(&mut self, scope: Option<usize>, lo: u64, hi: u64) {
        self.serials.entry(scope).or_default().push((lo, hi));
    }

    fn revoke_key_id(&mut self, scope: Option<usize>, id: &str) {
        self.key_ids.entry(scope).or_default().insert(id.to_owned());
    }

    fn verdict(&self, item: &Item) -> Verdict {
        let revoked = match item {
            Item::Plain(key) => self.keys.contains(key),
            Item::Cert(c) => {
                self.keys.contains(&KeyRef::User(c.subject))
                    || self.keys.contains(&KeyRef::Ca(c.ca))
                    || [Some(c.ca), None].iter().any(|scope| {
                        (c.serial != 0
                            && self.serials.get(scope).is_some_and(|ranges| {
                                ranges
                                    .iter()
                                    .any(|&(lo, hi)| lo <= c.serial && c.serial <= hi)
                            }))
                            || self
                                .key_ids
                                .get(scope)
                                .is_some_and(|ids| ids.contains(&c.key_id))
                    })
            }
        };
        if revoked {
            Verdict::Revoked
        } else {
            Verdict::Ok
        }
    }
}

#[derive(Debug, Clone)]
struct Cert {
    ca: usize,
    subject: usize,
    serial: u64,
    key_id: String,
}

/// One key or certificate that every checker is asked about.
#[derive(Debug, Clone)]
enum Item {
    Plain(KeyRef),
    Cert(Cert),
}

impl Item {
    fn describe(&self) -> String {
        match self {
            Item::Plain(KeyRef::Ca(i)) => format!("plain key ca{i}"),
            Item::Plain(KeyRef::User(i)) => format!("plain key u{i}"),
            Item::Cert(c) => format!(
                "cert by ca{} for u{} serial {} id {:?}",
                c.ca, c.subject, c.serial, c.key_id
            ),
        }
    }
}

/// One round: a scope, a serial shape, and the seed-driven rest.
struct Round<'a> {
    name: &'a str,
    scope: Scope,
    shape: Shape,
    /// Whether ssh-keygen may write a KRL it cannot load itself (then the model decides).
    theirs_may_fail: bool,
}

fn run_round(round: &Round<'_>) -> Result<()> {
    let (seed, mut rng) = seeded_rng(&format!("krl_differential::{}", round.name))?;
    let fx = Fixture::new(round.name)?;
    let dir = fx.dir.path();

    let ranges = serial_ranges(round.shape, &mut rng);
    let mut spec = Spec::default();
    spec.revoke_serials_and_key_ids(round.scope, &ranges, &mut rng);
    spec.revoke_keys(&fx, &mut rng)?;
    let universe = Universe::sign(&fx, round, &ranges, &mut rng)?;
    spec.revoke_bare_certificates(&universe, &mut rng)?;
    if matches!(round.shape, Shape::Mixed) {
        spec.revoke_key_of_a_certificate(&universe, &mut rng)?;
    }

    let specs = write_specs(dir, &mut spec.lines, &mut rng)?;
    let ca_arg = match round.scope {
        Scope::Absent => CaArg::Absent,
        Scope::Ca(i) => CaArg::Key(&fx.cas[i].public),
        Scope::Wildcard => CaArg::Wildcard,
    };
    let ours = dir.join("ours.krl");
    let theirs = dir.join("theirs.krl");
    ssh_keygen_build(&theirs, ca_arg, &specs)?;
    agent_build(&ours, ca_arg, &specs)?;

    let failures = verify(round, &spec, &universe, &ours, &theirs)?;
    if failures.is_empty() {
        return Ok(());
    }
    let kept = artifacts_dir(&format!("krl_differential-{}-{seed}", round.name));
    keep(dir, &kept)?;
    bail!(
        "round {} (seed {seed}, replay with SIGNOFF_TEST_SEED={seed}); spec, KRLs and keys \
         kept in {}:\n{}",
        round.name,
        kept.display(),
        failures.join("\n")
    )
}

/// The spec lines of a round and the model of what they revoke.
#[derive(Default)]
struct Spec {
    lines: Vec<String>,
    model: Model,
}

impl Spec {
    /// `serial:` lines for `ranges` and `id:` lines for two key IDs, under `scope`.
    fn revoke_serials_and_key_ids(
        &mut self,
        scope: Scope,
        ranges: &[(u64, u64)],
        rng: &mut StdRng,
    ) {
        if scope == Scope::Absent {
            return;
        }
        for &(lo, hi) in ranges {
            self.model.revoke_serials(scope.model_key(), lo, hi);
            self.lines.push(if lo == hi {
                format!("serial: {lo}")
            } else {
                format!("serial: {lo}-{hi}")
            });
        }
        let mut ids = KEY_IDS.to_vec();
        ids.shuffle(rng);
        for id in &ids[..2] {
            self.model.revoke_key_id(scope.model_key(), id);
            self.lines.push(format!("id: {id}"));
        }
    }

    /// Three user keys and the revoked CA's key, each by a random kind of line.
    fn revoke_keys(&mut self, fx: &Fixture, rng: &mut StdRng) -> Result<()> {
        let mut users: Vec<usize> = (0..CLEAN_USER).collect();
        users.shuffle(rng);
        let mut keys: Vec<KeyRef> = users[..3].iter().map(|&u| KeyRef::User(u)).collect();
        keys.push(KeyRef::Ca(REVOKED_CA));
        for key in keys {
            let how = *KEY_LINES.choose(rng).unwrap_or(&KeyLine::Bare);
            self.lines.push(key_line(fx.key(key), how)?);
            self.model.keys.insert(key);
        }
        Ok(())
    }

    /// Bare certificate lines for a few certificates (one of serial 0 if there is one):
    /// revoked by serial under their own CA, or by key ID if their serial is 0.
    fn revoke_bare_certificates(&mut self, universe: &Universe, rng: &mut StdRng) -> Result<()> {
        let certs = universe.certs();
        let mut bare: Vec<usize> = (0..certs.len())
            .filter(|&i| certs[i].ca != REVOKED_CA)
            .collect();
        bare.shuffle(rng);
        bare.truncate(4);
        if let Some(zero) = certs.iter().position(|c| c.serial == 0) {
            bare.push(zero);
        }
        for i in bare {
            let c = certs[i];
            if c.serial == 0 {
                self.model.revoke_key_id(Some(c.ca), &c.key_id);
            } else {
                self.model.revoke_serials(Some(c.ca), c.serial, c.serial);
            }
            self.lines.push(keys::public_line(&universe.paths[i])?);
        }
        Ok(())
    }

    /// `key:` or `sha256:` followed by a certificate revokes the certificate's key (and so
    /// every certificate of that key).
    fn revoke_key_of_a_certificate(&mut self, universe: &Universe, rng: &mut StdRng) -> Result<()> {
        let certs = universe.certs();
        if let Some(i) = (0..certs.len()).find(|&i| certs[i].subject != CLEAN_USER) {
            let how = if rng.random_bool(0.5) {
                "key"
            } else {
                "sha256"
            };
            self.lines
                .push(format!("{how}: {}", keys::public_line(&universe.paths[i])?));
            self.model.keys.insert(KeyRef::User(certs[i].subject));
        }
        Ok(())
    }
}

/// Every key and certificate the checkers are asked about, with their files.
struct Universe {
    items: Vec<Item>,
    paths: Vec<PathBuf>,
}

impl Universe {
    /// Certificates at the probe serials, by the round's CA and one or two others, three
    /// by the revoked CA; then every plain CA and user key.
    fn sign(
        fx: &Fixture,
        round: &Round<'_>,
        ranges: &[(u64, u64)],
        rng: &mut StdRng,
    ) -> Result<Universe> {
        let mut certs: Vec<Cert> = Vec::new();
        let signing_cas: Vec<usize> = (0..CA_COUNT).filter(|&c| c != REVOKED_CA).collect();
        for serial in probe_serials(ranges, round.shape, rng) {
            let mut cas: BTreeSet<usize> = BTreeSet::new();
            if let Scope::Ca(c) = round.scope {
                cas.insert(c);
            }
            cas.insert(*signing_cas.choose(rng).unwrap_or(&0));
            if rng.random_bool(0.3) {
                cas.insert(*signing_cas.choose(rng).unwrap_or(&0));
            }
            for ca in cas {
                certs.push(random_cert(rng, ca, serial));
            }
        }
        for _ in 0..3 {
            let serial = rng.random_range(1..=u64::MAX);
            certs.push(random_cert(rng, REVOKED_CA, serial));
        }
        let requests: Vec<CertRequest> = certs
            .iter()
            .enumerate()
            .map(|(i, c)| CertRequest {
                ca: fx.cas[c.ca].clone(),
                subject: fx.users[c.subject].clone(),
                out: fx.dir.path().join(format!("cert{i}")),
                key_id: c.key_id.clone(),
                principals: "root".to_owned(),
                serial: c.serial,
            })
            .collect();
        let mut paths = keys::sign_all(&requests)?;
        let mut items: Vec<Item> = certs.into_iter().map(Item::Cert).collect();
        for i in 0..CA_COUNT {
            items.push(Item::Plain(KeyRef::Ca(i)));
            paths.push(fx.cas[i].public.clone());
        }
        for i in 0..USER_KEYS.len() {
            items.push(Item::Plain(KeyRef::User(i)));
            paths.push(fx.users[i].public.clone());
        }
        Ok(Universe { items, paths })
    }

    /// The certificates, which come first in `items` and `paths`.
    fn certs(&self) -> Vec<&Cert> {
        self.items
            .iter()
            .map_while(|item| match item {
                Item::Cert(c) => Some(c),
                Item::Plain(_) => None,
            })
            .collect()
    }
}

/// Runs every checker on every item; returns what disagreed.
fn verify(
    round: &Round<'_>,
    spec: &Spec,
    universe: &Universe,
    ours: &Path,
    theirs: &Path,
) -> Result<Vec<String>> {
    let (items, paths) = (&universe.items, &universe.paths);
    let mut failures = Vec::new();
    let expected: Vec<Verdict> = items.iter().map(|i| spec.model.verdict(i)).collect();
    // ssh-keygen is the oracle where it can load its own KRL; where its encoder wrote a
    // bitmap its parser refuses (wide dense clusters), the model is.
    let (oracle, theirs_loads) = match ssh_keygen_check(theirs, paths)? {
        Check::Loaded(v) => {
            compare(
                &mut failures,
                "ssh-keygen -Q THEIRS vs the model",
                items,
                &expected,
                &v,
            );
            (v, true)
        }
        Check::Refused(out) if round.theirs_may_fail => {
            eprintln!(
                "round {}: ssh-keygen cannot load its own KRL: {}",
                round.name,
                out.stderr.trim()
            );
            (expected, false)
        }
        Check::Refused(out) => bail!(
            "round {}: ssh-keygen cannot load its own KRL, so it is no oracle here: {}",
            round.name,
            out.stderr
        ),
    };
    for (what, check) in [
        ("ssh-keygen -Q OURS", ssh_keygen_check(ours, paths)?),
        ("krl check OURS", agent_check(ours, paths)?),
    ] {
        match check {
            Check::Loaded(v) => compare(&mut failures, what, items, &oracle, &v),
            Check::Refused(out) => failures.push(format!(
                "{what}: refused the KRL ({}): {}",
                out.status, out.stderr
            )),
        }
    }
    match (agent_check(theirs, paths)?, theirs_loads) {
        (Check::Loaded(v), true) => compare(&mut failures, "krl check THEIRS", items, &oracle, &v),
        (Check::Refused(out), true) => failures.push(format!(
            "krl check THEIRS: refused a KRL that OpenSSH loads ({}): {}",
            out.status, out.stderr
        )),
        (Check::Loaded(_), false) => {
            failures.push("krl check THEIRS: loaded a KRL that OpenSSH refuses".to_owned())
        }
        (Check::Refused(_), false) => {}
    }
    let (ours_len, theirs_len) = (fs::metadata(ours)?.len(), fs::metadata(theirs)?.len());
    if theirs_loads {
        let dump = agent_dump(theirs)?;
        if !dump.success() || dump.stdout.is_empty() {
            failures.push(format!(
                "krl dump THEIRS failed ({}): {}",
                dump.status, dump.stderr
            ));
        }
        if ours_len > theirs_len {
            failures.push(format!(
                "OURS is {ours_len} bytes, larger than ssh-keygen's {theirs_len}"
            ));
        }
    }

    let revoked = oracle.iter().filter(|v| **v == Verdict::Revoked).count();
    eprintln!(
        "round {}: {} spec lines, {} keys and certificates ({revoked} revoked); \
         OURS {ours_len} bytes, THEIRS {theirs_len} bytes",
        round.name,
        spec.lines.len(),
        items.len()
    );
    // A round where nothing or everything is revoked would prove little.
    if revoked == 0 || revoked == items.len() {
        failures.push(format!(
            "degenerate round: {revoked} of {} revoked",
            items.len()
        ));
    }
    Ok(failures)
}

/// Records every item where `got` differs from `want` (the first 20 in full).
fn compare(
    failures: &mut Vec<String>,
    what: &str,
    items: &[Item],
    want: &[Verdict],
    got: &[Verdict],
) {
    let diffs: Vec<String> = items
        .iter()
        .zip(want.iter().zip(got))
        .enumerate()
        .filter(|(_, (_, (w, g)))| w != g)
        .map(|(i, (item, (w, g)))| format!("  #{i} {}: want {w}, got {g}", item.describe()))
        .collect();
    if !diffs.is_empty() {
        let mut msg = format!(
            "{what}: {} of {} verdicts differ:",
            diffs.len(),
            items.len()
        );
        for d in diffs.iter().take(20) {
            let _ = write!(msg, "\n{d}");
        }
        failures.push(msg);
    }
}

fn random_cert(rng: &mut StdRng, ca: usize, serial: u64) -> Cert {
    let subject = if rng.random_bool(0.7) {
        CLEAN_USER
    } else {
        rng.random_range(0..CLEAN_USER)
    };
    Cert {
        ca,
        subject,
        serial,
        key_id: (*KEY_IDS.choose(rng).unwrap_or(&"x")).to_owned(),
    }
}

fn key_line(key: &KeyPair, how: KeyLine) -> Result<String> {
    Ok(match how {
        KeyLine::Explicit => format!("key: {}", key.public_line()?),
        KeyLine::Sha1 => format!("sha1: {}", key.public_line()?),
        KeyLine::Sha256 => format!("sha256: {}", key.public_line()?),
        KeyLine::Hash => format!("hash: {}", key.sha256_fingerprint()?),
        KeyLine::Bare => key.public_line()?,
    })
}

/// Revoked serial ranges (`lo == hi` for a single serial) for `shape`. Never serial 0.
fn serial_ranges(shape: Shape, rng: &mut StdRng) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    match shape {
        Shape::None => {}
        Shape::Sparse => sparse(rng, &mut out, 300, 10),
        Shape::DenseClusters => dense(rng, &mut out, 4, 1000..4000),
        Shape::WideClusters => dense(rng, &mut out, 2, 10_000..40_000),
        Shape::LongRanges => long_ranges(rng, &mut out, 40),
        Shape::NearMax => near_max(rng, &mut out),
        Shape::Mixed => {
            sparse(rng, &mut out, 40, 3);
            dense(rng, &mut out, 1, 1000..4000);
            long_ranges(rng, &mut out, 5);
            near_max(rng, &mut out);
        }
    }
    out
}

fn sparse(rng: &mut StdRng, out: &mut Vec<(u64, u64)>, singles: usize, ranges: usize) {
    for _ in 0..singles {
        let s = rng.random_range(1..=u64::MAX);
        out.push((s, s));
    }
    for _ in 0..ranges {
        let lo = rng.random_range(1..=u64::MAX - 1000);
        out.push((lo, lo + rng.random_range(1..1000)));
    }
}

fn dense(
    rng: &mut StdRng,
    out: &mut Vec<(u64, u64)>,
    clusters: usize,
    widths: std::ops::Range<u64>,
) {
    for _ in 0..clusters {
        let base = rng.random_range(1..1u64 << 40);
        let width = rng.random_range(widths.clone());
        let density = *[0.1, 0.5, 0.9].choose(rng).unwrap_or(&0.5);
        let mut s = base;
        while s < base + width {
            if rng.random_bool(0.05) {
                // A short run written as a range.
                let hi = s + rng.random_range(1..40);
                out.push((s, hi));
                s = hi + 2;
            } else {
                if rng.random_bool(density) {
                    out.push((s, s));
                }
                s += 1;
            }
        }
    }
}

fn long_ranges(rng: &mut StdRng, out: &mut Vec<(u64, u64)>, count: usize) {
    let mut lo = rng.random_range(1..1u64 << 20);
    for _ in 0..count {
        let len = 10u64.pow(rng.random_range(3..13)) + rng.random_range(0..1000);
        let hi = lo.saturating_add(len);
        out.push((lo, hi));
        // A single serial just past the end, then either an adjacent range, an
        // overlapping one, or a gap.
        if rng.random_bool(0.5) {
            out.push((hi + 2, hi + 2));
        }
        lo = match rng.random_range(0..3) {
            0 => hi + 1,
            1 => hi - rng.random_range(0..len),
            _ => hi + rng.random_range(3..1u64 << 30),
        };
    }
}

fn near_max(rng: &mut StdRng, out: &mut Vec<(u64, u64)>) {
    const MAX: u64 = u64::MAX;
    const MID: u64 = 1 << 63;
    out.extend([
        (MAX - 100, MAX),
        (MAX - 200, MAX - 200),
        (MAX - 202, MAX - 202),
        (MID - 5, MID + 5),
        (MID - 100, MID - 100),
        (1, 3),
    ]);
    for _ in 0..30 {
        let s = rng.random_range(MAX - 20_000..=MAX - 300);
        if rng.random_bool(0.3) {
            out.push((s, s + rng.random_range(1..50)));
        } else {
            out.push((s, s));
        }
    }
}

/// Serials to make certificates for: both sides of every edge of a sample of the revoked
/// ranges, some random ones from the same distribution, serial 0, and the extremes.
fn probe_serials(ranges: &[(u64, u64)], shape: Shape, rng: &mut StdRng) -> Vec<u64> {
    let mut probes: BTreeSet<u64> = [0, 1, u64::MAX].into();
    let mut sample: Vec<&(u64, u64)> = ranges.iter().collect();
    sample.shuffle(rng);
    for &&(lo, hi) in sample.iter().take(12) {
        probes.extend([lo - 1, lo, lo + (hi - lo) / 2, hi, hi.saturating_add(1)]);
    }
    for _ in 0..8 {
        let near = sample.choose(rng).map_or(1, |r| r.0);
        probes.insert(match shape {
            Shape::DenseClusters | Shape::Mixed => near.saturating_add(rng.random_range(0..4000)),
            Shape::WideClusters => near.saturating_add(rng.random_range(0..40_000)),
            _ => rng.random_range(1..=u64::MAX),
        });
    }
    probes.into_iter().collect()
}

/// Shuffles the lines into two spec files, with a comment, blank lines, indentation and
/// trailing comments here and there, as people write them.
fn write_specs(dir: &Path, lines: &mut [String], rng: &mut StdRng) -> Result<Vec<PathBuf>> {
    lines.shuffle(rng);
    let split = rng.random_range(0..=lines.len());
    let mut specs = Vec::new();
    for (n, part) in [&lines[..split], &lines[split..]].into_iter().enumerate() {
        let mut text = format!("# revocations, part {n}\n\n");
        for line in part {
            let indent = if rng.random_bool(0.05) { "  \t" } else { "" };
            let tail = if rng.random_bool(0.05) {
                format!("  # note {}", rng.next_u32())
            } else {
                String::new()
            };
            let _ = writeln!(text, "{indent}{line}{tail}");
        }
        let path = dir.join(format!("spec{n}.txt"));
        fs::write(&path, text)?;
        specs.push(path);
    }
    Ok(specs)
}

/// Copies the round's directory (spec, KRLs, keys) to `dest` for a human to inspect.
fn keep(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), dest.join(entry.file_name()))?;
        }
    }
    Ok(())
}

#[test]
fn sparse_random_64_bit_serials_under_one_ca() -> Result<()> {
    run_round(&Round {
        name: "sparse",
        scope: Scope::Ca(0),
        theirs_may_fail: false,
        shape: Shape::Sparse,
    })
}

#[test]
fn dense_clusters_under_one_ca() -> Result<()> {
    run_round(&Round {
        name: "dense",
        scope: Scope::Ca(1),
        theirs_may_fail: false,
        shape: Shape::DenseClusters,
    })
}

#[test]
fn wide_dense_clusters_under_one_ca() -> Result<()> {
    run_round(&Round {
        name: "wide-dense",
        scope: Scope::Ca(1),
        theirs_may_fail: true,
        shape: Shape::WideClusters,
    })
}

#[test]
fn long_ranges_under_one_ca() -> Result<()> {
    run_round(&Round {
        name: "long-ranges",
        scope: Scope::Ca(2),
        theirs_may_fail: false,
        shape: Shape::LongRanges,
    })
}

#[test]
fn ranges_near_u64_max_for_any_ca() -> Result<()> {
    run_round(&Round {
        name: "near-max",
        scope: Scope::Wildcard,
        theirs_may_fail: false,
        shape: Shape::NearMax,
    })
}

#[test]
fn a_mix_of_everything_for_any_ca() -> Result<()> {
    run_round(&Round {
        name: "mixed",
        scope: Scope::Wildcard,
        theirs_may_fail: false,
        shape: Shape::Mixed,
    })
}

#[test]
fn keys_and_bare_certificates_without_a_ca() -> Result<()> {
    run_round(&Round {
        name: "no-ca",
        scope: Scope::Absent,
        theirs_may_fail: false,
        shape: Shape::None,
    })
}

/// The spec syntax people write: prefixes in any case, hex and octal serials (ssh-keygen
/// reads them with `strtoull(…, 0)`), whitespace, comments. Ours must read every line as
/// ssh-keygen does; the expected verdicts are spelled out as well.
#[test]
fn spec_syntax_variants_read_as_ssh_keygen_reads_them() -> Result<()> {
    let fx = Fixture::new("syntax")?;
    let dir = fx.dir.path();
    let spec = format!(
        "# revoked by the security team\n\
         \n\
         \x20  serial: 100\n\
         SERIAL: 0x200\n\
         Serial:0x10-0x1f\n\
         serial: 0150\n\
         serial:\t1000-2000   # trailing comment\n\
         id:   spaced id\n\
         ID: Upper\n\
         \tid:\ttabbed\n\
         KEY: {u0}\n\
         Sha256: {u1}\n\
         HASH: {u2}\n\
         {u3}   # a bare key\n",
        u0 = fx.users[0].public_line()?,
        u1 = fx.users[1].public_line()?,
        u2 = fx.users[2].sha256_fingerprint()?,
        u3 = fx.users[3].public_line()?,
    );
    let spec_path = dir.join("spec.txt");
    fs::write(&spec_path, spec)?;

    let revoked_serials = [100, 512, 16, 31, 104, 1000, 1500, 2000];
    let ok_serials = [99, 101, 511, 513, 15, 32, 150, 999, 2001];
    let mut cases: Vec<(String, u64, Verdict)> = Vec::new();
    for s in revoked_serials {
        cases.push(("someone".to_owned(), s, Verdict::Revoked));
    }
    for s in ok_serials {
        cases.push(("someone".to_owned(), s, Verdict::Ok));
    }
    for (id, verdict) in [
        ("spaced id", Verdict::Revoked),
        ("Upper", Verdict::Revoked),
        ("tabbed", Verdict::Revoked),
        ("upper", Verdict::Ok),
        ("spaced", Verdict::Ok),
    ] {
        cases.push((id.to_owned(), 5, verdict));
    }
    let requests: Vec<CertRequest> = cases
        .iter()
        .enumerate()
        .map(|(i, (id, serial, _))| CertRequest {
            ca: fx.cas[0].clone(),
            subject: fx.users[CLEAN_USER].clone(),
            out: dir.join(format!("cert{i}")),
            key_id: id.clone(),
            principals: "root".to_owned(),
            serial: *serial,
        })
        .collect();
    let mut paths = keys::sign_all(&requests)?;
    let mut expected: Vec<Verdict> = cases.iter().map(|c| c.2).collect();
    let mut names: Vec<String> = cases
        .iter()
        .map(|(id, s, _)| format!("cert serial {s} id {id:?}"))
        .collect();
    for (u, verdict) in [
        (0, Verdict::Revoked),
        (1, Verdict::Revoked),
        (2, Verdict::Revoked),
        (3, Verdict::Revoked),
        (4, Verdict::Ok),
    ] {
        paths.push(fx.users[u].public.clone());
        expected.push(verdict);
        names.push(format!("plain key u{u}"));
    }

    let ca = CaArg::Key(&fx.cas[0].public);
    let ours = dir.join("ours.krl");
    let theirs = dir.join("theirs.krl");
    ssh_keygen_build(&theirs, ca, std::slice::from_ref(&spec_path))?;
    agent_build(&ours, ca, &[spec_path])?;
    let oracle = ssh_keygen_check(&theirs, &paths)?.verdicts()?;
    for (what, got) in [
        ("ssh-keygen -Q THEIRS", oracle.clone()),
        (
            "ssh-keygen -Q OURS",
            ssh_keygen_check(&ours, &paths)?.verdicts()?,
        ),
        ("krl check OURS", agent_check(&ours, &paths)?.verdicts()?),
    ] {
        for i in 0..paths.len() {
            assert_eq!(got[i], expected[i], "{what}: {}", names[i]);
        }
    }
    Ok(())
}
