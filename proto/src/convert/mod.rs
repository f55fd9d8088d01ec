//! The one conversion layer between the API's messages and Signet's model, used by both
//! binaries: `From` for model → proto (never fails), `TryFrom` and named parsers for proto →
//! model. Everything that arrives from the network is parsed here and refused with a
//! [`ConvertError`] naming the field; the server returns its text to clients as SPIRE words
//! it, the agent logs it.

mod agent;
mod bundle;
mod entry;
mod id;
mod status;
mod svid;

pub use agent::agent_to_proto;
pub use bundle::bundle_to_proto;
pub use entry::{entry_to_proto, full_entry_mask, validated_entry};
pub use id::{match_behavior, selectors, spiffe_id};
pub use status::{denial_details, denial_reason};
pub use svid::x509_svid;

/// A message field that does not hold what it must. Its text, `<field>: <reason>`, is what
/// the server's API returns to the caller (SPIRE's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConvertError {
    /// The field, as the proto names it (`spiffe_id`, `x509_authorities`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConvertError {
    /// `field` is wrong because of `reason`.
    pub fn new(field: &'static str, reason: impl ToString) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}
