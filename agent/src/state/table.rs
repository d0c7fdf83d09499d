//! Sorted tables of fixed-width rows, searched on disk with a few positioned reads.
//!
//! ```text
//! fences   n_blocks x W bytes   a copy of the first row of each block
//! block 0  BLOCK_ROWS x W bytes, then CRC-32(section number, block number, rows)
//! block 1  …
//! ```
//!
//! A search binary-searches the fences (reading them a few at a time, then the last 4 KiB
//! at once) for the block that should hold the probe, then reads that block and the next
//! one in one read and checks both checksums. The fences carry no checksum of their own:
//! whatever they said, the answer is taken only from checksummed blocks, and only after
//! checking that those blocks bracket the probe (first row of the block <= probe < first
//! row of the next block). A fence that lies therefore makes the search fail as corrupt;
//! it can never make it miss a row.

use super::format::{BLOCK_ROWS, FormatError, ReadAt, Section, SectionId, le_u32};

/// Fence bytes below which the rest of a fence search is done in memory.
const FENCE_WINDOW: u64 = 4096;

/// Which table and how wide its rows are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableSpec {
    pub(crate) id: SectionId,
    pub(crate) width: usize,
}

impl TableSpec {
    /// The spec of a table section. Panics on a record section: a programming error.
    pub(crate) fn of(id: SectionId) -> TableSpec {
        TableSpec {
            id,
            width: id.table_width().unwrap_or(1),
        }
    }
}

/// Bytes taken by a table of `rows` rows of `width` bytes; `None` on overflow.
pub(crate) fn byte_len(rows: u64, width: usize) -> Option<u64> {
    let width = width as u64;
    let blocks = rows.div_ceil(BLOCK_ROWS as u64);
    let fences = blocks.checked_mul(width)?;
    let data = rows.checked_mul(width)?;
    fences
        .checked_add(data)?
        .checked_add(blocks.checked_mul(4)?)
}

fn block_crc(id: SectionId, block: u64, rows: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[id as u8]);
    h.update(&block.to_le_bytes());
    h.update(rows);
    h.finalize()
}

/// Sorts and deduplicates `rows` and lays them out as a table; returns the bytes and the
/// row count.
pub(crate) fn build<const W: usize>(spec: TableSpec, mut rows: Vec<[u8; W]>) -> (Vec<u8>, u64) {
    debug_assert_eq!(spec.width, W);
    rows.sort_unstable();
    rows.dedup();
    let mut out = Vec::with_capacity(
        usize::try_from(byte_len(rows.len() as u64, W).unwrap_or(0)).unwrap_or(0),
    );
    for block in rows.chunks(BLOCK_ROWS) {
        out.extend_from_slice(&block[0]);
    }
    for (i, block) in rows.chunks(BLOCK_ROWS).enumerate() {
        let start = out.len();
        for row in block {
            out.extend_from_slice(row);
        }
        let crc = block_crc(spec.id, i as u64, &out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    (out, rows.len() as u64)
}

/// A table section of an open file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    spec: TableSpec,
    section: Section,
}

/// Checked rows of one or more consecutive blocks, as read for one search.
struct Window {
    /// Number of the first block in `rows`.
    first_block: u64,
    /// Rows of the blocks, checksums removed.
    rows: Vec<u8>,
    /// Rows in the first block.
    first_block_rows: usize,
}

impl Table {
    pub(crate) fn new(spec: TableSpec, section: Section) -> Table {
        Table { spec, section }
    }

    fn corrupt(&self) -> FormatError {
        FormatError::TableInconsistent {
            section: self.spec.id.name(),
        }
    }

    fn blocks(&self) -> u64 {
        self.section.count.div_ceil(BLOCK_ROWS as u64)
    }

    fn rows_in_block(&self, block: u64) -> usize {
        let before = block * BLOCK_ROWS as u64;
        (self.section.count - before).min(BLOCK_ROWS as u64) as usize
    }

    /// Offset of a block from the start of the section.
    fn block_offset(&self, block: u64) -> u64 {
        let w = self.spec.width as u64;
        self.blocks() * w + block * (BLOCK_ROWS as u64 * w + 4)
    }

    /// Number of fences that are <= `probe` (if the fences are sorted, as written).
    fn count_fences_le<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        probe: &[u8],
    ) -> Result<u64, FormatError> {
        let w = self.spec.width as u64;
        let (mut lo, mut hi) = (0u64, self.blocks());
        let mut fence = vec![0u8; self.spec.width];
        while (hi - lo) * w > FENCE_WINDOW {
            let mid = lo + (hi - lo) / 2;
            src.read_exact_at(&mut fence, self.section.offset + mid * w)
                .map_err(FormatError::Io)?;
            if fence.as_slice() <= probe {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut window = vec![0u8; ((hi - lo) * w) as usize];
        src.read_exact_at(&mut window, self.section.offset + lo * w)
            .map_err(FormatError::Io)?;
        let le = window
            .chunks_exact(self.spec.width)
            .take_while(|f| *f <= probe)
            .count();
        Ok(lo + le as u64)
    }

    /// Reads blocks `first..first + n` (clamped to the table) in one read and checks them.
    fn read_blocks<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        first: u64,
        n: u64,
    ) -> Result<Window, FormatError> {
        let end = (first + n).min(self.blocks());
        let start_at = self.block_offset(first);
        let end_at = if end == self.blocks() {
            self.section.len
        } else {
            self.block_offset(end)
        };
        let mut raw = vec![0u8; (end_at - start_at) as usize];
        src.read_exact_at(&mut raw, self.section.offset + start_at)
            .map_err(FormatError::Io)?;
        let mut rows = Vec::with_capacity(raw.len());
        let mut at = 0usize;
        for block in first..end {
            let len = self.rows_in_block(block) * self.spec.width;
            let data = &raw[at..at + len];
            if le_u32(&raw[at + len..at + len + 4]) != block_crc(self.spec.id, block, data) {
                return Err(FormatError::BlockChecksum {
                    section: self.spec.id.name(),
                    block,
                });
            }
            rows.extend_from_slice(data);
            at += len + 4;
        }
        Ok(Window {
            first_block: first,
            rows,
            first_block_rows: self.rows_in_block(first),
        })
    }

    /// Finds and reads the block that holds the greatest row <= `probe` (if any) and the
    /// block after it, and checks that they bracket `probe`. Returns the window and the
    /// number of fences <= `probe` (0: every row is above `probe`).
    fn bracket<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        probe: &[u8],
    ) -> Result<Option<(Window, u64)>, FormatError> {
        if self.section.count == 0 {
            return Ok(None);
        }
        let le = self.count_fences_le(src, probe)?;
        let block = le.saturating_sub(1);
        let window = self.read_blocks(src, block, 2)?;
        let w = self.spec.width;
        let first = &window.rows[..w];
        let in_range = if le == 0 {
            first > probe
        } else {
            first <= probe
        };
        let next_above = window
            .rows
            .get(window.first_block_rows * w..(window.first_block_rows + 1) * w)
            .is_none_or(|next| next > probe);
        if !in_range || !next_above {
            return Err(self.corrupt());
        }
        Ok(Some((window, le)))
    }

    /// Whether the table holds exactly `row`.
    pub(crate) fn contains<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        row: &[u8],
    ) -> Result<bool, FormatError> {
        let Some((window, _)) = self.bracket(src, row)? else {
            return Ok(false);
        };
        let w = self.spec.width;
        let rows = &window.rows[..window.first_block_rows * w];
        Ok(rows.chunks_exact(w).any(|r| r == row))
    }

    /// The greatest row <= `probe`.
    pub(crate) fn floor<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        probe: &[u8],
    ) -> Result<Option<Vec<u8>>, FormatError> {
        let Some((window, le)) = self.bracket(src, probe)? else {
            return Ok(None);
        };
        if le == 0 {
            return Ok(None);
        }
        let w = self.spec.width;
        Ok(window.rows[..window.first_block_rows * w]
            .chunks_exact(w)
            .take_while(|r| *r <= probe)
            .last()
            .map(<[u8]>::to_vec))
    }

    /// Calls `each` with every row that starts with `prefix`, in order.
    pub(crate) fn scan_prefix<R: ReadAt + ?Sized, E: From<FormatError>>(
        &self,
        src: &R,
        prefix: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let w = self.spec.width;
        let mut probe = prefix.to_vec();
        probe.resize(w, 0);
        let Some((mut window, _)) = self.bracket(src, &probe)? else {
            return Ok(());
        };
        let mut start = window
            .rows
            .chunks_exact(w)
            .take_while(|r| *r < probe.as_slice())
            .count();
        loop {
            for row in window.rows.chunks_exact(w).skip(start) {
                if !row.starts_with(prefix) {
                    return Ok(());
                }
                each(row)?;
            }
            let next = window.first_block + (window.rows.len() / w).div_ceil(BLOCK_ROWS) as u64;
            if next >= self.blocks() {
                return Ok(());
            }
            window = self.read_blocks(src, next, 1)?;
            start = 0;
        }
    }

    /// Checks every block and that rows strictly increase and fences match (full decode).
    #[cfg(test)]
    pub(crate) fn verify_all<R: ReadAt + ?Sized>(&self, src: &R) -> Result<(), FormatError> {
        if self.section.count == 0 {
            return Ok(());
        }
        let window = self.read_blocks(src, 0, self.blocks())?;
        let w = self.spec.width;
        let mut fences = vec![0u8; (self.blocks() as usize) * w];
        src.read_exact_at(&mut fences, self.section.offset)
            .map_err(FormatError::Io)?;
        let rows: Vec<&[u8]> = window.rows.chunks_exact(w).collect();
        if rows.windows(2).any(|p| p[0] >= p[1]) {
            return Err(self.corrupt());
        }
        for (i, fence) in fences.chunks_exact(w).enumerate() {
            if rows[i * BLOCK_ROWS] != fence {
                return Err(self.corrupt());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: TableSpec = TableSpec {
        id: SectionId::RevokedKeyIds,
        width: 32,
    };

    fn row(n: u32) -> [u8; 32] {
        let mut r = [0u8; 32];
        r[..4].copy_from_slice(&n.to_be_bytes());
        r
    }

    fn table(rows: Vec<[u8; 32]>) -> (Vec<u8>, Table) {
        let (bytes, count) = build(SPEC, rows);
        let section = Section {
            offset: 0,
            len: bytes.len() as u64,
            count,
        };
        assert_eq!(byte_len(count, 32), Some(bytes.len() as u64));
        (bytes, Table::new(SPEC, section))
    }

    #[test]
    fn contains_and_floor_across_sizes() {
        for n in [0u32, 1, 2, 63, 64, 65, 200, 1000, 5000] {
            // Even numbers only, so odd probes are misses between rows.
            let (bytes, t) = table((0..n).map(|i| row(2 * i + 2)).collect());
            t.verify_all(&bytes).unwrap();
            for probe in [0, 1, 2, 3, n, 2 * n, 2 * n + 1, 2 * n + 2, 2 * n + 3] {
                let expect = probe >= 2 && probe % 2 == 0 && probe <= 2 * n;
                assert_eq!(
                    t.contains(&bytes, &row(probe)).unwrap(),
                    expect,
                    "n={n} {probe}"
                );
                let floor = t.floor(&bytes, &row(probe)).unwrap();
                let want = (probe >= 2 && n > 0).then(|| row((probe.min(2 * n)) & !1).to_vec());
                assert_eq!(floor, want, "n={n} floor {probe}");
            }
        }
    }

    #[test]
    fn prefix_scan_crosses_blocks() {
        // 300 rows share the prefix 7: they span five blocks.
        let mut rows: Vec<[u8; 32]> = (0..1000).map(|i| row(i * 2)).collect();
        for i in 0..300u32 {
            let mut r = row(7);
            r[4..8].copy_from_slice(&i.to_be_bytes());
            rows.push(r);
        }
        let (bytes, t) = table(rows);
        let mut seen = Vec::new();
        t.scan_prefix::<_, FormatError>(&bytes, &7u32.to_be_bytes(), |r| {
            seen.push(u32::from_be_bytes(r[4..8].try_into().unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        let mut none = 0;
        t.scan_prefix::<_, FormatError>(&bytes, &9u32.to_be_bytes(), |_| {
            none += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn a_lying_fence_is_caught_not_believed() {
        let (mut bytes, t) = table((0..1000).map(|i| row(2 * i + 2)).collect());
        // Fence of block 3 now claims a larger first row than the block holds.
        bytes[3 * 32] = 0xff;
        let probe = row(3 * 64 * 2 + 10);
        let err = t.contains(&bytes, &probe).unwrap_err();
        assert!(
            matches!(err, FormatError::TableInconsistent { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_flipped_row_fails_the_block_checksum() {
        let (mut bytes, t) = table((0..1000).map(|i| row(2 * i + 2)).collect());
        let blocks = 1000u64.div_ceil(64);
        let at = (blocks * 32 + 5 * (64 * 32 + 4) + 100) as usize;
        bytes[at] ^= 1;
        let probe = row(5 * 64 * 2 + 8);
        let err = t.contains(&bytes, &probe).unwrap_err();
        assert!(
            matches!(err, FormatError::BlockChecksum { block: 5, .. }),
            "{err}"
        );
    }
}
