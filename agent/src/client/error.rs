//! Why a call to the server failed, and whether the server refused the agent itself
//! (SPIRE's `PermissionDeniedDetails`, read from the status details as SPIRE's agent does).

use std::time::Duration;

use prost::Message;
use signet_proto::types;
use signet_proto::types::permission_denied_details::Reason;
use tonic::Code;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (or could not be reached: `Unavailable`).
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The server's answer did not make sense.
    #[error("malformed answer from the server: {0}")]
    Malformed(String),
    /// A message from the server did not convert to the model.
    #[error("malformed answer from the server: {0}")]
    Convert(#[from] signet_proto::convert::ConvertError),
    /// The TLS configuration could not be built (bad bundle or SVID).
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    /// The call did not finish in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The node attestor could not gather its evidence (e.g. an unreadable token file).
    #[error("{0}")]
    Attestor(String),
}

/// Why the server refused this agent (SPIRE's `PermissionDeniedDetails.Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The agent was banned.
    Banned,
    /// The server has no record of the agent (evicted).
    NotAttested,
    /// The agent SVID expired.
    Expired,
    /// The SVID presented is no longer the agent's current one.
    NotActive,
    /// The agent must attest again.
    MustReattest,
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

impl ClientError {
    /// If the server refused this agent itself (not one request), why.
    pub fn denial(&self) -> Option<Denial> {
        let Self::Status(status) = self else {
            return None;
        };
        if status.code() != Code::PermissionDenied {
            return None;
        }
        let reason = RpcStatus::decode(status.details())
            .ok()
            .into_iter()
            .flat_map(|s| s.details)
            .filter(|any| {
                any.type_url
                    .ends_with("spire.api.types.PermissionDeniedDetails")
            })
            .find_map(|any| types::PermissionDeniedDetails::decode(any.value.as_slice()).ok())
            .and_then(|d| Reason::try_from(d.reason).ok());
        match reason {
            Some(Reason::AgentBanned) => Some(Denial::Banned),
            Some(Reason::AgentNotAttested) => Some(Denial::NotAttested),
            Some(Reason::AgentExpired) => Some(Denial::Expired),
            Some(Reason::AgentNotActive) => Some(Denial::NotActive),
            Some(Reason::AgentMustReattest) => Some(Denial::MustReattest),
            Some(Reason::Unknown) | None => status
                .message()
                .to_ascii_lowercase()
                .contains("banned")
                .then_some(Denial::Banned),
        }
    }

    /// Whether the server could not be reached (or did not answer in time).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Status(s) => matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
            Self::Timeout(_) => true,
            Self::Malformed(_) | Self::Convert(_) | Self::Tls(_) | Self::Attestor(_) => false,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(reason: Reason, message: &str) -> ClientError {
        let details = types::PermissionDeniedDetails {
            reason: reason as i32,
        };
        let rpc = RpcStatus {
            code: Code::PermissionDenied as i32,
            message: message.into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/spire.api.types.PermissionDeniedDetails".into(),
                value: details.encode_to_vec(),
            }],
        };
        ClientError::Status(tonic::Status::with_details(
            Code::PermissionDenied,
            message,
            rpc.encode_to_vec().into(),
        ))
    }

    #[test]
    fn denial_reasons_are_read_from_the_status_details() {
        assert_eq!(
            denied(Reason::AgentBanned, "x").denial(),
            Some(Denial::Banned)
        );
        assert_eq!(
            denied(Reason::AgentNotAttested, "x").denial(),
            Some(Denial::NotAttested)
        );
        assert_eq!(
            denied(Reason::AgentExpired, "x").denial(),
            Some(Denial::Expired)
        );
    }

    #[test]
    fn a_banned_message_without_details_is_a_ban() {
        let e = ClientError::Status(tonic::Status::permission_denied(
            "agent spiffe://example.org/spire/agent/x is banned or no longer attested",
        ));
        assert_eq!(e.denial(), Some(Denial::Banned));
        let e = ClientError::Status(tonic::Status::permission_denied(
            "entry not found or not authorized",
        ));
        assert_eq!(
            e.denial(),
            None,
            "refusing one request is not refusing the agent"
        );
        let e = ClientError::Status(tonic::Status::unavailable("banned"));
        assert_eq!(e.denial(), None);
        assert!(e.is_unavailable());
    }
}
