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
//! - [`config`]: the agent's configuration file (`/etc/signoff/agent.toml`).
//! - [`state`]: the host view (grants, revocations, disabled users) in memory, as snapshots
//!   and deltas apply to it, and on disk in a format the sshd commands query with a few
//!   positioned reads; the last-contact time.
//! - [`krl_writer`]: the KRL for sshd's `RevokedKeys`, built from the host view.
//! - [`principals`]: `signoff-agent principals` and `authorized-keys`, the commands sshd runs
//!   at every login.
//! - [`signoffs`]: signed sign-off statements; the daemon ends every session of the people
//!   they name.
//!
//! The binary's `main.rs` only parses arguments and maps errors to exit codes.

#![forbid(unsafe_code)]

/// Crash-safe file replacement, shared with the control plane.
pub use signoff_core::atomic;
pub mod approvals;
pub mod config;
pub mod daemon;
pub mod identity;
pub mod kill;
pub mod kill_journal;
pub mod krl_tool;
pub mod krl_writer;
pub mod orders;
pub mod principals;
pub mod sessions;
pub mod signoffs;
pub mod state;
pub mod status;
pub mod syslog;
pub mod transport;
pub mod trusted_cas;
