//! What goes wrong in a handler, and the one place it becomes a `tonic::Status` (logged there,
//! like SPIRE's `MakeErr`).

use prost::Message;
use signet_common::echo::bounded;
use signet_common::id::IdError;
use signet_proto::types::permission_denied_details::Reason;
use tonic::{Code, Status};

use crate::ca::CaError;
use crate::datastore::StoreError;

/// What went wrong in a handler. Converted to a `Status` in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// Missing record; the inner error is not exposed.
    #[error("{0}")]
    NotFound(String),
    /// Duplicate.
    #[error("{0}")]
    AlreadyExists(String),
    /// Not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    /// Not allowed, with SPIRE's machine-readable reason for agents.
    #[error("{0}")]
    AgentDenied(String, Reason),
    /// The request is valid but the server's state refuses it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server's own fault.
    #[error("{0}")]
    Internal(String),
    /// Not built.
    #[error("{0}")]
    Unimplemented(String),
    /// The caller's credentials are missing or invalid.
    #[error("{0}")]
    Unauthenticated(String),
    /// A dependency (the database) cannot be reached; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub(crate) fn agent_denied(msg: impl Into<String>, reason: Reason) -> Self {
        Self::AgentDenied(msg.into(), reason)
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::PermissionDenied(_) | Self::AgentDenied(..) => Code::PermissionDenied,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Internal(_) => Code::Internal,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Unavailable(_) => Code::Unavailable,
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

/// `google.rpc.Status`, to carry `PermissionDeniedDetails` as grpc-go's `status.WithDetails`
/// does (SPIRE agents read the reason from it).
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        log(&err);
        let code = err.code();
        match err {
            ApiError::AgentDenied(msg, reason) => {
                let msg = bounded(&msg).into_owned();
                let details = signet_proto::types::PermissionDeniedDetails {
                    reason: reason as i32,
                };
                let any = prost_types::Any {
                    type_url: "type.googleapis.com/spire.api.types.PermissionDeniedDetails".into(),
                    value: details.encode_to_vec(),
                };
                let rpc = RpcStatus {
                    code: code as i32,
                    message: msg.clone(),
                    details: vec![any],
                };
                Status::with_details(code, msg, rpc.encode_to_vec().into())
            }
            other => Status::new(code, bounded(&other.to_string())),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::AlreadyExists(what) => Self::AlreadyExists(what),
            StoreError::SimilarEntry(_) => {
                Self::AlreadyExists("similar entry already exists".into())
            }
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::MalformedCsr(_) | CaError::InvalidRequest(_) => {
                Self::InvalidArgument(e.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<signet_proto::convert::ConvertError> for ApiError {
    fn from(e: signet_proto::convert::ConvertError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use signet_proto::convert::ConvertError;

    use super::*;

    #[test]
    fn a_conversion_error_is_an_invalid_argument_with_its_text() {
        let err = ApiError::from(ConvertError::new("spiffe_id", "SPIFFE ID is required"));
        assert!(matches!(err, ApiError::InvalidArgument(_)), "{err:?}");
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "spiffe_id: SPIFFE ID is required");
    }
}
