//! SPIRE's `PermissionDeniedDetails`, carried in a status's `grpc-status-details-bin` as a
//! `google.rpc.Status` (grpc-go's `status.WithDetails`): how the server tells an agent why
//! it refuses the agent itself, and how the agent reads it.

use prost::Message;

use crate::types::PermissionDeniedDetails;
use crate::types::permission_denied_details::Reason;

/// The `Any` type URL of `PermissionDeniedDetails`.
const DETAILS_TYPE_URL: &str = "type.googleapis.com/spire.api.types.PermissionDeniedDetails";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// The details of a status with `code` and `message` that carries `reason`.
pub fn denial_details(code: i32, message: &str, reason: Reason) -> Vec<u8> {
    let details = PermissionDeniedDetails {
        reason: reason as i32,
    };
    RpcStatus {
        code,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: DETAILS_TYPE_URL.into(),
            value: details.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// The reason a status's details carry, if they carry one (any type URL prefix).
pub fn denial_reason(details: &[u8]) -> Option<Reason> {
    RpcStatus::decode(details)
        .ok()?
        .details
        .into_iter()
        .filter(|any| {
            any.type_url
                .ends_with("spire.api.types.PermissionDeniedDetails")
        })
        .find_map(|any| PermissionDeniedDetails::decode(any.value.as_slice()).ok())
        .and_then(|d| Reason::try_from(d.reason).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_reason_round_trips_and_garbage_carries_none() {
        let details = denial_details(7, "agent is banned", Reason::AgentBanned);
        assert_eq!(denial_reason(&details), Some(Reason::AgentBanned));
        assert_eq!(denial_reason(b"\xff\xff"), None);
        assert_eq!(denial_reason(&[]), None);
    }
}
