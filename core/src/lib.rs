//! The rules the agent and the control plane both apply, each in one place: what a
//! duration in a configuration file may say ([`duration`]), what a certificate principal
//! may be ([`principal`]), how a `SHA256:` key fingerprint is read ([`fingerprint`]), and
//! how a file another program reads is replaced ([`atomic`]), and how an error is told on
//! one line with its causes ([`error`]).
//! A rule that two sides apply differently is a bug waiting for the host that meets it
//! (the control plane once accepted a principal every agent then silently skipped).
//!
//! Small on purpose (`thiserror`, `tempfile`, `base64`, which it would link anyway):
//! `signoff-sshd`, which sshd starts twice per login, links it.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod duration;
pub mod error;
pub mod fingerprint;
pub mod principal;
