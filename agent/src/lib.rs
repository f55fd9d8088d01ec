//! Signet agent: attests its node to the server, keeps the SVIDs of the workloads it is
//! authorized for current, and serves them to local workloads over the SPIFFE Workload API
//! (and to Envoy over SDS) on a Unix socket, attesting each caller from its peer credentials.

pub mod attestor;
pub mod cli;
pub mod client;
pub mod config;
pub mod doctor;
pub mod endpoints;
pub mod manager;
pub mod metrics;
pub mod peer;
pub mod retry;
pub mod run;
pub mod svid;
