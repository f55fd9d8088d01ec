//! Signet's shared model. No gRPC and no I/O here: SPIFFE IDs, selectors, registration
//! entries, the injected clock and the rotation policy as pure functions. The one
//! exception is [`uds`] (feature `uds`): the Unix-socket gRPC plumbing both binaries serve
//! through.
#![warn(missing_docs)]

pub mod bundle;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod echo;
pub mod entry;
pub mod fs;
#[cfg(any(test, feature = "test-util"))]
pub mod fuzz;
#[cfg(feature = "health")]
pub mod health;
#[cfg(feature = "health")]
pub mod http_listener;
pub mod id;
mod jwk;
#[cfg(feature = "k8s")]
pub mod k8s;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod node;
pub mod pem;
pub mod private_dir;
pub mod psat;
pub mod rotation;
pub mod selector;
pub mod sigcheck;
#[cfg(feature = "metrics")]
pub mod size_limit;
pub mod telemetry;
pub mod tls;
#[cfg(feature = "uds")]
pub mod uds;
pub mod x509;
