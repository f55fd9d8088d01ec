//! Signet server: the certificate authority, the registration entries and the
//! SPIRE-compatible server API, served over TCP (TLS) to agents and over a Unix socket to
//! local administrators.

pub mod api;
pub mod attestation;
pub mod authz;
pub mod ca;
pub mod cli;
pub mod config;
pub mod datastore;
pub mod endpoints;
pub mod events;
pub mod federation;
pub mod import;
pub use signet_common::k8s;
pub mod keys;
pub mod metrics;
pub mod publish;
pub mod registry;
pub mod relationship;
pub mod run;
