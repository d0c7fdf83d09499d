//! The SSH wire primitives a KRL is made of (RFC 4251 §5): a bounds-checked reader that
//! knows its absolute offset in the file, so every decode error can say where it is.

use super::decode::{DecodeError, DecodeErrorKind};

/// Reads SSH wire types from a byte slice. Lengths read from the input are checked against
/// the bytes actually present before anything is sliced or allocated.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Absolute offset of `buf[0]` in the whole KRL.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Absolute offset of the next byte to be read.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.offset(),
            kind,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.error(DecodeErrorKind::Truncated { what }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `string`: u32 length, then that many bytes.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.u32(what)? as usize;
        if self.remaining() < len {
            self.pos = start;
            return Err(self.error(DecodeErrorKind::Truncated { what }));
        }
        self.bytes(len, what)
    }

    /// A `string` read as a nested reader whose offsets stay absolute.
    pub(crate) fn sub(&mut self, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        let data_start = self.offset() + 4;
        let buf = self.string(what)?;
        Ok(Reader {
            buf,
            pos: 0,
            base: data_start,
        })
    }

    /// A `string` that OpenSSH reads with `sshbuf_get_cstring`: no NUL byte inside.
    pub(crate) fn cstring(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let start = self.offset();
        let s = self.string(what)?;
        if s.contains(&0) {
            return Err(DecodeError {
                offset: start,
                kind: DecodeErrorKind::NulInString { what },
            });
        }
        Ok(s)
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(DecodeErrorKind::TrailingData {
                what,
                bytes: self.remaining(),
            }))
        }
    }
}

/// Appends SSH wire types to a byte vector.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a `string`. Every string signoff writes is far below 4 GiB; a longer one is a
/// bug, not an input error.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    put_u32(out, len);
    out.extend_from_slice(s);
}

/// Writes a section whose body is produced by `body`, patching its length afterwards so
/// the body is built in place rather than in a second buffer.
pub(crate) fn put_section(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(kind);
    let len_at = out.len();
    put_u32(out, 0);
    body(out);
    let len = u32::try_from(out.len() - len_at - 4).unwrap_or(u32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}
