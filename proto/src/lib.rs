//! Every byte format that both sides of signoff must agree on.
//!
//! - [`approvals`]: what approvers sign (k-of-n approvals of privileged grants and
//!   re-enables) and how a host counts their SSHSIG signatures against `allowed_signers`.
//! - [`host_keys`]: the proof that a host holds a host key it wants certified.
//! - [`krl`]: OpenSSH key revocation lists (`PROTOCOL.krl`), read and written. The encoder
//!   never writes a KRL that sshd would refuse to load.
//! - [`orders`]: the canonical bytes of kill orders and their SSHSIG signatures, which
//!   `ssh-keygen -Y verify` checks.
//! - [`pin`]: the agent CA pin.
//! - [`v1`]: the agent <-> control plane gRPC protocol, generated at build time from
//!   `proto/signoff/v1/*.proto` by a pure-Rust protobuf compiler (no `protoc` needed).

#![forbid(unsafe_code)]

pub mod allowed_signers;
pub mod approvals;
pub mod audit_chain;
pub mod host_keys;
pub mod krl;
pub mod orders;
pub mod pin;

/// Generated gRPC messages and services of `proto/signoff/v1/agent.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unused_qualifications,
    clippy::all
)]
pub mod v1 {
    tonic::include_proto!("signoff.v1");
}
