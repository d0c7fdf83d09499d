//! Sets of certificate serials as sorted runs.

/// The serials `lo..=hi`. In a normalized list, ranges are sorted, disjoint and never
/// adjacent (a run ends where the next gap begins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SerialRange {
    /// First serial of the run.
    pub lo: u64,
    /// Last serial of the run (inclusive).
    pub hi: u64,
}

impl SerialRange {
    /// Number of serials in the run, saturating at `u64::MAX` for the full range.
    pub fn len(&self) -> u64 {
        (self.hi - self.lo).saturating_add(1)
    }

    /// Never true: a range holds at least one serial.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Serials as they are revoked, before [`Pending::normalize`]. Single serials, by far the
/// most common, are kept as bare `u64`s: half the memory of ranges, and they sort faster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pending {
    singles: Vec<u64>,
    ranges: Vec<SerialRange>,
}

impl Pending {
    pub(crate) fn push(&mut self, r: SerialRange) {
        if r.lo == r.hi {
            self.singles.push(r.lo);
        } else {
            self.ranges.push(r);
        }
    }

    /// Sorts everything and merges overlapping and adjacent serials into runs.
    pub(crate) fn normalize(self) -> Vec<SerialRange> {
        let Pending {
            mut singles,
            mut ranges,
        } = self;
        if !singles.is_sorted() {
            singles.sort_unstable();
        }
        // Only the start matters for merging; comparing one u64 sorts faster than the pair.
        if !ranges.is_sorted_by_key(|r| r.lo) {
            ranges.sort_unstable_by_key(|r| r.lo);
        }
        let mut out: Vec<SerialRange> = Vec::with_capacity(singles.len() + ranges.len());
        let mut add = |r: SerialRange| match out.last_mut() {
            Some(last) if r.lo <= last.hi.saturating_add(1) => {
                if r.hi > last.hi {
                    last.hi = r.hi;
                }
            }
            _ => out.push(r),
        };
        // Merge the two sorted streams by start.
        let mut ranges = ranges.into_iter().peekable();
        for s in singles {
            while let Some(r) = ranges.next_if(|r| r.lo <= s) {
                add(r);
            }
            add(SerialRange { lo: s, hi: s });
        }
        for r in ranges {
            add(r);
        }
        out.shrink_to_fit();
        out
    }
}

/// Sorts ranges and merges overlapping and adjacent ones into runs.
#[cfg(test)]
pub(crate) fn normalize(ranges: Vec<SerialRange>) -> Vec<SerialRange> {
    let mut p = Pending::default();
    for r in ranges {
        p.push(r);
    }
    p.normalize()
}

/// Whether `serial` is in normalized `runs`.
pub(crate) fn contains(runs: &[SerialRange], serial: u64) -> bool {
    // Index of the first run starting above `serial`; the run before it is the candidate.
    let i = runs.partition_point(|r| r.lo <= serial);
    i > 0 && runs[i - 1].hi >= serial
}
