//! Attestors: `node` proves this agent's node to the server; `workload` turns a caller's
//! process into selectors.

pub mod node;
pub mod workload;
