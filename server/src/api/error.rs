//! What goes wrong in a handler, and the one place it becomes a `tonic::Status` (logged there,
//! like SPIRE's `MakeErr`).

use signet_common::echo::bounded;
use signet_common::id::IdError;
use signet_common::selector::SelectorError;
use signet_proto::convert::{ConvertError, denial_details};
use signet_proto::types::permission_denied_details::Reason;
use tonic::{Code, Status};

use crate::api::istio::token::TokenError;
use crate::attestation::{AttestError, Refusal};
use crate::ca::CaError;
use crate::datastore::StoreError;

/// What went wrong in a handler, by cause: a bad request, a refusal, or a failure of a
/// lower layer carried with its source. Converted to a `Status` in exactly one place (the
/// code picked by [`ApiError::code`], the message its `Display`, as SPIRE words it).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (a missing or bad field, filter, CSR or page token).
    #[error("{0}")]
    BadRequest(String),
    /// A message field did not convert to the model.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// A SPIFFE ID or trust domain in the request is invalid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A request message is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A record the request names does not exist; the inner error is not exposed.
    #[error("{0}")]
    Missing(String),
    /// The record the request would create exists.
    #[error("{0}")]
    Duplicate(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The agent itself is refused, with SPIRE's machine-readable reason.
    #[error("{0}")]
    AgentRefused(String, Reason),
    /// The request is valid but the server's state refuses it.
    #[error("{0}")]
    WrongState(String),
    /// The method or mode is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The caller's credentials are missing or unusable.
    #[error("{0}")]
    NoCredentials(String),
    /// A bearer token (Istio) did not verify.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Node attestation refused the agent or failed (code by the attestor's refusal).
    #[error(transparent)]
    Attestation(AttestError),
    /// The store refused the change or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA refused the request or failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The server's own trust bundle has no X.509 authority to hand out.
    #[error("trust bundle has no X.509 authorities")]
    NoX509Authorities,
    /// A value the server built itself was refused (a broken invariant).
    #[error(transparent)]
    Invariant(#[from] SelectorError),
    /// The server is stopping; the client should retry (against another server).
    #[error("server is shutting down")]
    ShuttingDown,
    /// `context: source`, with the source's code.
    #[error("{context}: {source}")]
    Context {
        /// What was being done (SPIRE's message).
        context: String,
        /// Why it failed.
        #[source]
        source: Box<ApiError>,
    },
}

impl ApiError {
    pub(crate) fn agent_denied(msg: impl Into<String>, reason: Reason) -> Self {
        Self::AgentRefused(msg.into(), reason)
    }

    /// The same error, its message prefixed with `context: ` (SPIRE's `MakeErr(msg, err)`).
    pub(crate) fn context(self, context: impl Into<String>) -> Self {
        Self::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Self::BadRequest(_) | Self::Convert(_) | Self::Id(_) => Code::InvalidArgument,
            Self::TooLarge(_) => Code::ResourceExhausted,
            Self::Missing(_) => Code::NotFound,
            Self::Duplicate(_) => Code::AlreadyExists,
            Self::Forbidden(_) | Self::AgentRefused(..) => Code::PermissionDenied,
            Self::WrongState(_) => Code::FailedPrecondition,
            Self::Unsupported(_) => Code::Unimplemented,
            Self::NoCredentials(_) | Self::Token(_) => Code::Unauthenticated,
            Self::Attestation(e) => match e {
                AttestError::Invalid(_) => Code::InvalidArgument,
                AttestError::Plugin { code, .. } => match code {
                    Refusal::InvalidArgument => Code::InvalidArgument,
                    Refusal::PermissionDenied => Code::PermissionDenied,
                    Refusal::FailedPrecondition => Code::FailedPrecondition,
                    Refusal::Internal => Code::Internal,
                },
                AttestError::Store(s) => store_code(s),
            },
            Self::Store(e) => store_code(e),
            Self::Ca(CaError::MalformedCsr(_) | CaError::InvalidRequest(_)) => {
                Code::InvalidArgument
            }
            Self::Ca(CaError::Refused(_)) => Code::FailedPrecondition,
            Self::Ca(CaError::Initializing) => Code::Unavailable,
            Self::Ca(_) | Self::NoX509Authorities | Self::Invariant(_) => Code::Internal,
            Self::ShuttingDown => Code::Unavailable,
            Self::Context { source, .. } => source.code(),
        }
    }

    /// SPIRE's reason when the agent itself is refused (through any context).
    fn agent_reason(&self) -> Option<Reason> {
        match self {
            Self::AgentRefused(_, reason) => Some(*reason),
            Self::Context { source, .. } => source.agent_reason(),
            _ => None,
        }
    }

    /// The per-item status SPIRE's batch RPCs return.
    pub fn to_item_status(&self) -> signet_proto::types::Status {
        log(self);
        signet_proto::types::Status {
            code: self.code() as i32,
            message: bounded(&self.to_string()).into_owned(),
        }
    }
}

impl From<AttestError> for ApiError {
    fn from(e: AttestError) -> Self {
        Self::Attestation(e)
    }
}

/// The code of a store error: a missing or duplicate record is the caller's, an unreachable
/// database is worth retrying; anything else is the server's own fault.
fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::NotFound(_) => Code::NotFound,
        StoreError::AlreadyExists(_) | StoreError::SimilarEntry(_) => Code::AlreadyExists,
        StoreError::Unavailable(_) => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The per-item OK status.
pub fn ok_status() -> signet_proto::types::Status {
    signet_proto::types::Status {
        code: 0,
        message: "OK".into(),
    }
}

fn log(err: &ApiError) {
    match err.code() {
        Code::Internal => tracing::error!(error = %err, "Request failed"),
        Code::NotFound | Code::AlreadyExists | Code::InvalidArgument => {
            tracing::debug!(error = %err, "Request refused")
        }
        _ => tracing::warn!(error = %err, code = ?err.code(), "Request refused"),
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        log(&err);
        let code = err.code();
        let msg = bounded(&err.to_string()).into_owned();
        match err.agent_reason() {
            Some(reason) => {
                let details = denial_details(code as i32, &msg, reason);
                Status::with_details(code, msg, details.into())
            }
            None => Status::new(code, msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversion_error_is_an_invalid_argument_with_its_text() {
        let err = ApiError::from(ConvertError::new("spiffe_id", "SPIFFE ID is required"));
        assert!(matches!(err, ApiError::Convert(_)), "{err:?}");
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "spiffe_id: SPIFFE ID is required");
    }
}
