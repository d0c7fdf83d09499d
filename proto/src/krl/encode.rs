//! KRL encoder.
//!
//! Serials are written as the cheapest mix of list, range and bitmap subsections. Where
//! `ssh-keygen -k` decides greedily run by run, we solve the choice exactly with a dynamic
//! program over the runs, under the parser's bitmap cap. Every choice ssh-keygen can make
//! without breaking the cap is one our program considers, and all list entries share one
//! subsection, so our output is never larger than a loadable ssh-keygen KRL of the same set.

use super::serials::SerialRange;
use super::wire::{put_section, put_string, put_u32, put_u64};
use super::{
    CERT_KEY_ID, CERT_SERIAL_BITMAP, CERT_SERIAL_LIST, CERT_SERIAL_RANGE, CertRevocations,
    FORMAT_VERSION, Krl, MAGIC, MAX_BITMAP_SPAN, SECTION_CERTIFICATES, SECTION_EXPLICIT_KEY,
    SECTION_FINGERPRINT_SHA1, SECTION_FINGERPRINT_SHA256,
};

/// Bytes of a subsection header: type byte and u32 length.
const SUBSECTION_HEADER: u64 = 1 + 4;
/// A range subsection: header, two u64.
const RANGE_COST: u64 = SUBSECTION_HEADER + 16;
/// A bitmap subsection without its mpint bytes: header, u64 offset, u32 mpint length.
const BITMAP_BASE_COST: u64 = SUBSECTION_HEADER + 8 + 4;
/// Serials per list subsection, keeping each far below the 4 GiB string limit.
const LIST_CHUNK: usize = 1 << 24;

pub(super) fn encode(krl: &Krl) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_u64(&mut out, krl.version);
    put_u64(&mut out, krl.generated_date);
    put_u64(&mut out, 0); // flags: none defined
    put_string(&mut out, &[]); // reserved
    put_string(&mut out, &krl.comment);

    for (ca, certs) in &krl.certs {
        put_section(&mut out, SECTION_CERTIFICATES, |s| {
            put_string(s, ca.wire_blob());
            put_string(s, &[]); // reserved
            put_cert_subsections(s, certs);
        });
    }
    if !krl.explicit_keys.is_empty() {
        put_section(&mut out, SECTION_EXPLICIT_KEY, |s| {
            for blob in &krl.explicit_keys {
                put_string(s, blob);
            }
        });
    }
    if !krl.sha1.is_empty() {
        put_section(&mut out, SECTION_FINGERPRINT_SHA1, |s| {
            for h in &krl.sha1 {
                put_string(s, h);
            }
        });
    }
    if !krl.sha256.is_empty() {
        put_section(&mut out, SECTION_FINGERPRINT_SHA256, |s| {
            for h in &krl.sha256 {
                put_string(s, h);
            }
        });
    }
    out
}

fn put_cert_subsections(out: &mut Vec<u8>, certs: &CertRevocations) {
    let runs = &certs.serials;
    let pieces = plan(runs);
    // The plan's cost is the exact size of what follows: reserve it once instead of
    // growing (and copying) megabytes of output step by step.
    out.reserve(usize::try_from(cost_of(runs, &pieces)).unwrap_or(0));
    let mut listed = 0usize;
    for piece in &pieces {
        match *piece {
            Piece::List(i) => listed += usize::try_from(runs[i].len()).unwrap_or(usize::MAX),
            Piece::Range(i) => {
                let r = runs[i];
                put_section(out, CERT_SERIAL_RANGE, |s| {
                    put_u64(s, r.lo);
                    put_u64(s, r.hi);
                });
            }
            Piece::Bitmap { first, last } => {
                put_section(out, CERT_SERIAL_BITMAP, |s| {
                    put_bitmap(s, &runs[first..=last]);
                });
            }
        }
    }
    // All listed serials share one subsection (a few for more than LIST_CHUNK of them).
    let mut serials = pieces.iter().flat_map(|p| match *p {
        Piece::List(i) => runs[i].lo..=runs[i].hi,
        #[allow(clippy::reversed_empty_ranges)]
        _ => 1..=0,
    });
    while listed > 0 {
        let n = listed.min(LIST_CHUNK);
        put_section(out, CERT_SERIAL_LIST, |s| {
            for serial in serials.by_ref().take(n) {
                put_u64(s, serial);
            }
        });
        listed -= n;
    }
    if !certs.key_ids.is_empty() {
        put_section(out, CERT_KEY_ID, |s| {
            for id in &certs.key_ids {
                put_string(s, id);
            }
        });
    }
}

/// Offset, then the runs as an mpint bitmap relative to the first run's start.
fn put_bitmap(out: &mut Vec<u8>, runs: &[SerialRange]) {
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return;
    };
    let offset = first.lo;
    let span = last.hi - offset + 1;
    // The top bit is span-1; span/8+1 bytes hold it with a clear most significant bit, so
    // the mpint is positive and minimal without a separate leading-zero rule.
    let nbytes = (span / 8 + 1) as usize;
    let mut bits = vec![0u8; nbytes];
    for r in runs {
        for serial in r.lo..=r.hi {
            let n = (serial - offset) as usize;
            bits[nbytes - 1 - n / 8] |= 1 << (n % 8);
        }
    }
    put_u64(out, offset);
    put_string(out, &bits);
}

fn bitmap_cost(span: u64) -> u64 {
    BITMAP_BASE_COST + span / 8 + 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    List(usize),
    Range(usize),
    Bitmap { first: usize, last: usize },
}

/// The cheapest encoding of `runs`, in run order.
///
/// A dynamic program over the runs in two layers: plans that have not listed any serial
/// yet, and plans that have (and so paid the list subsection's header once). A bitmap of
/// runs `j..=i` costs `BITMAP_BASE_COST + 1 + floor((hi_i + 1 - lo_j) / 8)` and may span at
/// most [`MAX_BITMAP_SPAN`] serials. Writing `a = hi_i + 1`, `b = lo_j`,
/// `floor((a - b) / 8) = a/8 - b/8 - [a%8 < b%8]`, so for each residue `b % 8` the best `j`
/// is the one minimizing `best[j] - b/8` within the span window: eight sliding-window
/// minima per layer make the program linear in the number of runs.
fn plan(runs: &[SerialRange]) -> Vec<Piece> {
    let n = runs.len();
    if n == 0 {
        return Vec::new();
    }
    // best[layer][i]: cheapest plan for runs 0..i; layer 1 has used the list.
    let mut best = [Vec::with_capacity(n + 1), Vec::with_capacity(n + 1)];
    best[0].push(0u64);
    best[1].push(u64::MAX / 4);
    let mut step = [Vec::with_capacity(n), Vec::with_capacity(n)];
    let mut windows: [[Window; 8]; 2] = Default::default();

    // Bit `8 * layer + residue` set: that window may hold candidates.
    let mut nonempty: u16 = 0;
    for (i, run) in runs.iter().enumerate() {
        // After a gap wider than a bitmap can span, nothing before this run can share a
        // bitmap with it or with anything after it: the windows start afresh. Sparse
        // serials make this the common case, so it skips the window scan.
        let isolated = i == 0 || run.lo - runs[i - 1].hi > MAX_BITMAP_SPAN;
        if isolated {
            while nonempty != 0 {
                let w = nonempty.trailing_zeros() as usize;
                windows[w / 8][w % 8].clear();
                nonempty &= nonempty - 1;
            }
        }
        let residue = (run.lo & 7) as usize;
        // Three or more serials cost more listed (24+ bytes) than as a range (21).
        let list = (run.len() <= 2).then(|| list_cost(run));
        let a = (run.hi >> 3) as i64 + i64::from(run.hi & 7 == 7);
        let a_residue = (run.hi.wrapping_add(1) & 7) as usize;
        let alone_span = (run.hi - run.lo).saturating_add(1);
        for layer in 0..2 {
            let key = best[layer][i] as i64 - (run.lo >> 3) as i64;
            windows[layer][residue].push(i, key);
            nonempty |= 1 << (8 * layer + residue);

            let (mut cost, mut how) = (best[layer][i] + RANGE_COST, Step::Range);
            if let (1, Some(list)) = (layer, list) {
                if best[1][i] + list < cost {
                    (cost, how) = (best[1][i] + list, Step::List);
                }
                if best[0][i] + list + SUBSECTION_HEADER < cost {
                    (cost, how) = (best[0][i] + list + SUBSECTION_HEADER, Step::FirstList);
                }
            }
            if isolated {
                if alone_span <= MAX_BITMAP_SPAN && best[layer][i] + bitmap_cost(alone_span) < cost
                {
                    (cost, how) = (best[layer][i] + bitmap_cost(alone_span), Step::Bitmap(i));
                }
                best[layer].push(cost);
                step[layer].push(how);
                continue;
            }
            for (r, window) in windows[layer].iter_mut().enumerate() {
                window.expire(|j| run.hi - runs[j].lo >= MAX_BITMAP_SPAN);
                if let Some((j, k)) = window.front() {
                    let c = k + a - i64::from(a_residue < r) + (BITMAP_BASE_COST + 1) as i64;
                    // A real byte count: non-negative.
                    let c = c as u64;
                    if c < cost {
                        (cost, how) = (c, Step::Bitmap(j));
                    }
                }
            }
            best[layer].push(cost);
            step[layer].push(how);
        }
    }

    let mut layer = usize::from(best[1][n] < best[0][n]);
    let mut pieces = Vec::new();
    let mut i = n;
    while i > 0 {
        let last = i - 1;
        match step[layer][last] {
            Step::Range => {
                pieces.push(Piece::Range(last));
                i = last;
            }
            Step::List => {
                pieces.push(Piece::List(last));
                i = last;
            }
            Step::FirstList => {
                pieces.push(Piece::List(last));
                layer = 0;
                i = last;
            }
            Step::Bitmap(first) => {
                pieces.push(Piece::Bitmap { first, last });
                i = first;
            }
        }
    }
    pieces.reverse();
    debug_assert_eq!(cost_of(runs, &pieces), best[0][n].min(best[1][n]));
    pieces
}

/// How the program reached run `i` in one layer.
#[derive(Debug, Clone, Copy)]
enum Step {
    Range,
    /// Listed, the list subsection already paid for.
    List,
    /// Listed, paying for the list subsection (coming from the no-list layer).
    FirstList,
    /// The last run of a bitmap starting at this run.
    Bitmap(usize),
}

/// Sliding-window minimum: candidates `(run index, key)` with increasing keys from front to
/// back; a `Vec` with a moving head, cheaper than a `VecDeque` here.
#[derive(Debug, Default)]
struct Window {
    items: Vec<(usize, i64)>,
    head: usize,
}

impl Window {
    fn clear(&mut self) {
        self.items.clear();
        self.head = 0;
    }

    fn push(&mut self, j: usize, key: i64) {
        while self.items.len() > self.head && self.items.last().is_some_and(|&(_, k)| k >= key) {
            self.items.pop();
        }
        if self.head == self.items.len() {
            self.clear();
        }
        self.items.push((j, key));
    }

    fn expire(&mut self, too_old: impl Fn(usize) -> bool) {
        while self.head < self.items.len() && too_old(self.items[self.head].0) {
            self.head += 1;
        }
    }

    fn front(&self) -> Option<(usize, i64)> {
        self.items.get(self.head).copied()
    }
}

fn list_cost(run: &SerialRange) -> u64 {
    run.len().saturating_mul(8)
}

/// Byte cost of a plan's serial subsections; for checking `plan`.
fn cost_of(runs: &[SerialRange], pieces: &[Piece]) -> u64 {
    let list_header = if pieces.iter().any(|p| matches!(p, Piece::List(_))) {
        SUBSECTION_HEADER
    } else {
        0
    };
    list_header
        + pieces
            .iter()
            .map(|p| match *p {
                Piece::List(i) => list_cost(&runs[i]),
                Piece::Range(_) => RANGE_COST,
                Piece::Bitmap { first, last } => bitmap_cost(runs[last].hi - runs[first].lo + 1),
            })
            .sum::<u64>()
}

#[cfg(test)]
pub(super) fn plan_for_tests(runs: &[SerialRange]) -> Vec<(u8, usize, usize)> {
    plan(runs)
        .into_iter()
        .map(|p| match p {
            Piece::List(i) => (CERT_SERIAL_LIST, i, i),
            Piece::Range(i) => (CERT_SERIAL_RANGE, i, i),
            Piece::Bitmap { first, last } => (CERT_SERIAL_BITMAP, first, last),
        })
        .collect()
}
