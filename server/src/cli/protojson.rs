//! The protojson form of the messages the CLI prints with `--output json`, as Go's
//! `protojson` writes them with `UseProtoNames` and `EmitUnpopulated`: proto field names,
//! zero values present, 64-bit integers as strings, bytes as base64, unset messages null
//! (dropped later by [`super::output::print_json`]).
//!
//! The field sets follow the SPIRE API SDK that SPIRE 1.13 ships, so fields Signet's protos
//! carry beyond it (`Bundle.wit_authorities`, `Agent.agent_version`,
//! `Entry.additional_attributes`) appear only when set.

use serde_json::{Map, Value, json};
use signet_proto::types;

use crate::cli::output::b64;

/// `SPIFFEID` or null.
pub(crate) fn id(id: Option<&types::Spiffeid>) -> Value {
    id.map_or(
        Value::Null,
        |id| json!({"trust_domain": id.trust_domain, "path": id.path}),
    )
}

/// `Status` or null.
pub(crate) fn status(s: Option<&types::Status>) -> Value {
    s.map_or(
        Value::Null,
        |s| json!({"code": s.code, "message": s.message}),
    )
}

fn selectors(selectors: &[types::Selector]) -> Value {
    selectors
        .iter()
        .map(|s| json!({"type": s.r#type, "value": s.value}))
        .collect()
}

/// `Entry` or null.
pub(crate) fn entry(e: Option<&types::Entry>) -> Value {
    let Some(e) = e else { return Value::Null };
    let mut v = json!({
        "id": e.id,
        "spiffe_id": id(e.spiffe_id.as_ref()),
        "parent_id": id(e.parent_id.as_ref()),
        "selectors": selectors(&e.selectors),
        "x509_svid_ttl": e.x509_svid_ttl,
        "federates_with": e.federates_with,
        "admin": e.admin,
        "downstream": e.downstream,
        "expires_at": e.expires_at.to_string(),
        "dns_names": e.dns_names,
        "revision_number": e.revision_number.to_string(),
        "store_svid": e.store_svid,
        "jwt_svid_ttl": e.jwt_svid_ttl,
        "hint": e.hint,
        "created_at": e.created_at.to_string(),
    });
    if let (Some(a), Some(obj)) = (&e.additional_attributes, v.as_object_mut()) {
        obj.insert(
            "additional_attributes".to_owned(),
            json!({
                "disable_x509_svid_prefetch": a.disable_x509_svid_prefetch,
                "jwt_svid_include_jti": a.jwt_svid_include_jti,
            }),
        );
    }
    v
}

/// `Agent`.
pub(crate) fn agent(a: &types::Agent) -> Value {
    let mut v = json!({
        "id": id(a.id.as_ref()),
        "attestation_type": a.attestation_type,
        "x509svid_serial_number": a.x509svid_serial_number,
        "x509svid_expires_at": a.x509svid_expires_at.to_string(),
        "selectors": selectors(&a.selectors),
        "banned": a.banned,
        "can_reattest": a.can_reattest,
    });
    if let (false, Some(obj)) = (a.agent_version.is_empty(), v.as_object_mut()) {
        obj.insert("agent_version".to_owned(), json!(a.agent_version));
    }
    v
}

/// `Bundle` or null.
pub(crate) fn bundle(b: Option<&types::Bundle>) -> Value {
    let Some(b) = b else { return Value::Null };
    let x509: Vec<Value> = b
        .x509_authorities
        .iter()
        .map(|c| json!({"asn1": b64(&c.asn1), "tainted": c.tainted}))
        .collect();
    let jwt: Vec<Value> = b
        .jwt_authorities
        .iter()
        .map(|k| {
            json!({
                "public_key": b64(&k.public_key),
                "key_id": k.key_id,
                "expires_at": k.expires_at.to_string(),
                "tainted": k.tainted,
            })
        })
        .collect();
    let mut obj = Map::new();
    obj.insert("trust_domain".to_owned(), json!(b.trust_domain));
    obj.insert("x509_authorities".to_owned(), Value::Array(x509));
    obj.insert("jwt_authorities".to_owned(), Value::Array(jwt));
    obj.insert("refresh_hint".to_owned(), json!(b.refresh_hint.to_string()));
    obj.insert(
        "sequence_number".to_owned(),
        json!(b.sequence_number.to_string()),
    );
    if !b.wit_authorities.is_empty() {
        let wit: Vec<Value> = b
            .wit_authorities
            .iter()
            .map(|k| {
                json!({
                    "public_key": b64(&k.public_key),
                    "key_id": k.key_id,
                    "expires_at": k.expires_at.to_string(),
                    "tainted": k.tainted,
                })
            })
            .collect();
        obj.insert("wit_authorities".to_owned(), Value::Array(wit));
    }
    Value::Object(obj)
}

/// `JoinToken`.
pub(crate) fn join_token(t: &types::JoinToken) -> Value {
    json!({"value": t.value, "expires_at": t.expires_at.to_string()})
}

/// `JWTSVID` or null.
pub(crate) fn jwt_svid(s: Option<&types::Jwtsvid>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({
            "token": s.token,
            "id": id(s.id.as_ref()),
            "expires_at": s.expires_at.to_string(),
            "issued_at": s.issued_at.to_string(),
            "hint": s.hint,
        })
    })
}

/// `{"count": n}` (the three `Count*Response` messages).
pub(crate) fn count(n: i32) -> Value {
    json!({ "count": n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::print_json;

    fn printed(v: Value) -> String {
        let mut out = Vec::new();
        print_json(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn entry_json_matches_spire_protojson() {
        let e = types::Entry {
            id: "e1".into(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: "/web".into(),
            }),
            parent_id: None,
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1".into(),
            }],
            revision_number: 2,
            ..Default::default()
        };
        assert_eq!(
            printed(entry(Some(&e))),
            concat!(
                r#"{"admin":false,"created_at":"0","dns_names":[],"downstream":false,"#,
                r#""expires_at":"0","federates_with":[],"hint":"","id":"e1","jwt_svid_ttl":0,"#,
                r#""revision_number":"2","selectors":[{"type":"unix","value":"uid:1"}],"#,
                r#""spiffe_id":{"path":"/web","trust_domain":"example.org"},"#,
                r#""store_svid":false,"x509_svid_ttl":0}"#,
                "\n"
            )
        );
    }

    #[test]
    fn bundle_json_encodes_bytes_and_int64() {
        let b = types::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![types::X509Certificate {
                asn1: vec![1, 2, 3],
                tainted: false,
            }],
            sequence_number: 7,
            ..Default::default()
        };
        assert_eq!(
            printed(bundle(Some(&b))),
            concat!(
                r#"{"jwt_authorities":[],"refresh_hint":"0","sequence_number":"7","#,
                r#""trust_domain":"example.org","x509_authorities":[{"asn1":"AQID","tainted":false}]}"#,
                "\n"
            )
        );
    }
}
