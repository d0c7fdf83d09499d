//! KRL encoder.
//!
//! Serials are written as the cheapest mix of list, range and bitmap subsections. Where
//! `ssh-keygen -k` decides greedily run by run, we solve the choice exactly with a dynamic
//! program over the runs, under the parser's bitmap cap. Every choice ssh-keygen can make
//! without breaking the cap is one our program considers, and all list entries share one
//! subsection, so our output is never larger than a loadable ssh-keygen KRL of the same set.

use std::collections::VecDeque;

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
    let mut listed = Vec::new();
    for piece in plan(runs) {
        match piece {
            Piece::List(i) => {
                let r = runs[i];
                listed.extend(r.lo..=r.hi);
            }
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
    for chunk in listed.chunks(LIST_CHUNK) {
        put_section(out, CERT_SERIAL_LIST, |s| {
            for &serial in chunk {
                put_u64(s, serial);
            }
        });
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
fn plan(runs: &[SerialRange]) -> Vec<Piece> {
    if runs.is_empty() {
        return Vec::new();
    }
    let with_list = solve(runs, true);
    let uses_list = with_list.pieces.iter().any(|p| matches!(p, Piece::List(_)));
    if !uses_list {
        return with_list.pieces;
    }
    // The list subsection's header is paid once; a plan without any list may still win.
    let without_list = solve(runs, false);
    if with_list.cost + SUBSECTION_HEADER <= without_list.cost {
        with_list.pieces
    } else {
        without_list.pieces
    }
}

#[derive(Debug)]
struct Solution {
    cost: u64,
    pieces: Vec<Piece>,
}

/// Minimum-cost partition of `runs` into listed runs, range runs and bitmaps of
/// consecutive runs spanning at most [`MAX_BITMAP_SPAN`] serials.
///
/// `best[i]` is the cost of runs `0..i`. A bitmap of runs `j..=i` costs
/// `BITMAP_BASE_COST + 1 + floor((hi_i + 1 - lo_j) / 8)`. Writing `a = hi_i + 1`, `b = lo_j`,
/// `floor((a - b) / 8) = a/8 - b/8 - [a%8 < b%8]`, so for each residue `b % 8` the best `j`
/// is the one minimizing `best[j] - b/8` within the span window: eight sliding-window
/// minima make the whole program linear in the number of runs.
fn solve(runs: &[SerialRange], allow_list: bool) -> Solution {
    let n = runs.len();
    let mut best: Vec<u64> = Vec::with_capacity(n + 1);
    best.push(0);
    // For run i: usize::MAX when it stands alone, else the first run of its bitmap.
    let mut bitmap_from: Vec<usize> = Vec::with_capacity(n);
    let mut windows: [VecDeque<(usize, i128)>; 8] = Default::default();

    for (i, run) in runs.iter().enumerate() {
        let key = i128::from(best[i]) - i128::from(run.lo >> 3);
        let window = &mut windows[(run.lo & 7) as usize];
        while window.back().is_some_and(|&(_, k)| k >= key) {
            window.pop_back();
        }
        window.push_back((i, key));

        let mut cost = best[i] + alone_cost(run, allow_list);
        let mut from = usize::MAX;
        let a = u128::from(run.hi) + 1;
        for (residue, window) in windows.iter_mut().enumerate() {
            while window
                .front()
                .is_some_and(|&(j, _)| run.hi - runs[j].lo >= MAX_BITMAP_SPAN)
            {
                window.pop_front();
            }
            if let Some(&(j, k)) = window.front() {
                let borrow = i128::from((a & 7) < residue as u128);
                let c = k + (a >> 3) as i128 - borrow + (BITMAP_BASE_COST + 1) as i128;
                // c is a real byte count, so it is non-negative and fits u64.
                let c = c as u64;
                if c < cost {
                    cost = c;
                    from = j;
                }
            }
        }
        best.push(cost);
        bitmap_from.push(from);
    }

    let mut pieces = Vec::new();
    let mut i = n;
    while i > 0 {
        let last = i - 1;
        match bitmap_from[last] {
            usize::MAX => {
                pieces.push(if allow_list && list_cost(&runs[last]) < RANGE_COST {
                    Piece::List(last)
                } else {
                    Piece::Range(last)
                });
                i = last;
            }
            first => {
                pieces.push(Piece::Bitmap { first, last });
                i = first;
            }
        }
    }
    pieces.reverse();
    debug_assert_eq!(cost_of(runs, &pieces), best[n]);
    Solution {
        cost: best[n],
        pieces,
    }
}

fn list_cost(run: &SerialRange) -> u64 {
    run.len().saturating_mul(8)
}

fn alone_cost(run: &SerialRange, allow_list: bool) -> u64 {
    if allow_list {
        list_cost(run).min(RANGE_COST)
    } else {
        RANGE_COST
    }
}

/// Byte cost of a plan's serial subsections, list header excluded; for checking `solve`.
fn cost_of(runs: &[SerialRange], pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match *p {
            Piece::List(i) => list_cost(&runs[i]),
            Piece::Range(_) => RANGE_COST,
            Piece::Bitmap { first, last } => bitmap_cost(runs[last].hi - runs[first].lo + 1),
        })
        .sum()
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
