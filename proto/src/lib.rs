//! Generated gRPC types for Signet: the SPIFFE Workload API (no package), the subset of
//! SPIRE's public server API that Signet serves, and Signet's own change-push service; and
//! [`convert`], the one conversion between those messages and `signet_common`'s model
//! (so the crates layer as common <- proto <- server, agent).

pub mod convert;
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    reason = "generated code"
)]
mod generated;

pub use generated::{istio, signet, spire, workload};
pub use spire::api::types;
