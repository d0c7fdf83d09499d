//! Every byte format that both sides of signoff must agree on.
//!
//! - [`krl`]: OpenSSH key revocation lists (`PROTOCOL.krl`), read and written. The encoder
//!   never writes a KRL that sshd would refuse to load.

#![forbid(unsafe_code)]

pub mod krl;
