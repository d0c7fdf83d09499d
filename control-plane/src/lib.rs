//! The signoff control plane: the store, the service layer every adapter goes through
//! (HTTP API, SCIM, admin CLI, dashboard, agent gRPC), per-host views and the audit log.
#![forbid(unsafe_code)]

pub mod agents;
pub mod alerts;
pub mod api;
pub mod audit;
pub mod bootstrap;
pub mod cert_ssh;
pub mod config;
pub mod dashboard;
#[cfg(test)]
mod dashboard_tests;
pub mod delivery;
pub mod events;
pub mod hooks;
pub mod model;
pub mod scim;
pub mod server;
pub mod service;
pub mod store;
mod tls_listener;
pub mod views;
