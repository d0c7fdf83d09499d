//! The signoff host agent: the daemon that keeps a host in step with the control plane
//! (principals, revocations, sessions, kill orders) and the small commands that sshd and
//! operators run on the host.
//!
//! What is here so far:
//!
//! - [`krl_tool`]: `signoff-agent krl build|check|dump`, OpenSSH key revocation lists from
//!   `ssh-keygen -k` spec files, checked and listed like `ssh-keygen -Q`.
//! - [`atomic`]: crash-safe file replacement, used for every file sshd reads (the KRL named
//!   by `RevokedKeys` above all: sshd refuses every key when that file is unreadable).
//!
//! The binary's `main.rs` only parses arguments and maps errors to exit codes.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod identity;
pub mod krl_tool;
pub mod transport;
