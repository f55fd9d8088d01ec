//! What goes wrong in a call on the public socket, and the one place it becomes a gRPC
//! status (and is logged).

use signet_common::echo::bounded;
use tonic::{Code, Status};

use crate::attestor::workload::AttestError;

/// What went wrong in a Workload API call. Converted to a `Status` in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The `workload.spiffe.io: true` metadata is missing or wrong.
    #[error("security header missing from request")]
    MissingHeader,
    /// A malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// The connection has no peer credentials.
    #[error("could not resolve the caller's credentials")]
    NoPeer,
    /// Every workload attestor failed.
    #[error("workload attestation failed: {0}")]
    Attestation(#[source] AttestError),
    /// The caller exited, or its PID now names another process.
    #[error("could not verify existence of the original caller")]
    CallerGone,
    /// No registration entry matches the caller (or the one it asked for).
    #[error("no identity issued")]
    NoIdentity,
    /// A transient failure; the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// Not offered.
    #[error("{0}")]
    Unimplemented(String),
}

impl ApiError {
    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Self::MissingHeader | Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NoPeer | Self::CallerGone => Code::Unauthenticated,
            Self::Attestation(_) | Self::Unavailable(_) => Code::Unavailable,
            Self::NoIdentity => Code::PermissionDenied,
            Self::Unimplemented(_) => Code::Unimplemented,
        }
    }

    fn log(&self) {
        let code = self.code();
        match self {
            Self::Attestation(cause) => {
                tracing::warn!(error = %cause, ?code, "Workload attestation failed")
            }
            Self::NoIdentity => tracing::warn!(?code, "No identity issued"),
            Self::MissingHeader | Self::InvalidArgument(_) | Self::Unimplemented(_) => {
                tracing::debug!(error = %self, ?code, "Request refused")
            }
            _ => tracing::warn!(error = %self, ?code, "Request failed"),
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        err.log();
        Status::new(err.code(), bounded(&err.to_string()))
    }
}
