//! The signoff host agent: the daemon that keeps a host in step with the control plane
//! (principals, revocations, sessions, kill orders) and the small commands that sshd and
//! operators run on the host.
//!
//! The modules:
//!
//! - [`config`]: the agent's configuration file (`/etc/signoff/agent.toml`).
//! - [`identity`], [`transport`]: the agent's key and certificate (made at enrollment,
//!   renewed over the stream) and the TLS client configurations.
//! - [`daemon`]: `signoff-agent run`: one sync stream to the control plane; applies each
//!   snapshot or delta, persists it, acks it.
//! - [`state`]: the host view (grants, revocations, disabled users) in memory, as snapshots
//!   and deltas apply to it, and on disk in a format the sshd commands query with a few
//!   positioned reads; the last-contact time.
//! - [`krl_writer`], [`trusted_cas`]: the files sshd reads (`RevokedKeys`,
//!   `TrustedUserCAKeys`), built from the host view and replaced atomically ([`atomic`]).
//! - [`sshd_commands`]: `signoff-agent principals` and `authorized-keys`, the commands sshd runs
//!   at every login; [`syslog`]: where they log refusals.
//! - [`sessions`]: the logins of the host's sshd, from its log and `/proc`.
//! - [`orders`]: checks of signed kill orders and their nonces; [`kill`], [`kill_journal`]:
//!   ending a login's every process, written down before the first signal.
//! - [`signoffs`]: signed sign-off statements; the daemon ends every session of the people
//!   they name.
//! - [`host_certs`]: SSH host certificates for the host's keys, from the control plane's
//!   host CA, renewed before they expire, where sshd's `HostCertificate` points.
//! - [`status`]: `signoff-agent status`.
//! - [`krl_tool`]: `signoff-agent krl build|check|dump`, OpenSSH key revocation lists from
//!   `ssh-keygen -k` spec files, checked and listed like `ssh-keygen -Q`.
//!
//! The binary's `main.rs` only parses arguments and maps errors to exit codes.

#![forbid(unsafe_code)]

/// Crash-safe file replacement, shared with the control plane.
pub use signoff_core::atomic;
pub mod approvals;
pub mod config;
pub mod daemon;
pub mod decisions;
pub mod guards;
pub mod holds;
pub mod host_certs;
pub mod identity;
pub mod kill;
pub mod kill_journal;
pub mod krl_tool;
pub mod krl_writer;
pub mod orders;
pub mod refused_outbox;
pub mod sessions;
pub mod signoffs;
pub mod sshd_commands;
pub mod state;
pub mod status;
pub mod syslog;
pub mod transport;
pub mod trusted_cas;
pub mod witness;
