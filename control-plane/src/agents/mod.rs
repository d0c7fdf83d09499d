//! Everything about agents on the control plane's side: the agent CA and enrollment, the
//! mTLS listener, and the sync stream that pushes each host its view.

pub mod listener;
pub mod pki;
pub mod sync;
pub mod tls;

#[cfg(test)]
mod tests;
