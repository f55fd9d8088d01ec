//! `--output json`: what SPIRE's CLI prints, i.e. protojson with proto field names and every
//! field present (`UseProtoNames`, `EmitUnpopulated`), bytes in standard base64, then
//! re-encoded by Go's `encoding/json` (sorted keys, nulls dropped, `<>&` escaped). Several
//! messages print as one array.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};
use signet_proto::workload::{
    JwtBundlesResponse, JwtsvidResponse, ValidateJwtsvidResponse, X509svidResponse,
};

/// `X509SVIDResponse`.
pub(crate) fn x509_svid_response(resp: &X509svidResponse) -> Value {
    let svids = resp
        .svids
        .iter()
        .map(|s| {
            object([
                ("bundle", b64(&s.bundle)),
                ("hint", s.hint.clone().into()),
                ("spiffe_id", s.spiffe_id.clone().into()),
                ("x509_svid", b64(&s.x509_svid)),
                ("x509_svid_key", b64(&s.x509_svid_key)),
            ])
        })
        .collect();
    object([
        (
            "crl",
            Value::Array(resp.crl.iter().map(|c| b64(c)).collect()),
        ),
        ("federated_bundles", bytes_map(&resp.federated_bundles)),
        ("svids", Value::Array(svids)),
    ])
}

/// `JWTSVIDResponse`.
pub(crate) fn jwt_svid_response(resp: &JwtsvidResponse) -> Value {
    let svids = resp
        .svids
        .iter()
        .map(|s| {
            object([
                ("hint", s.hint.clone().into()),
                ("spiffe_id", s.spiffe_id.clone().into()),
                ("svid", s.svid.clone().into()),
            ])
        })
        .collect();
    object([("svids", Value::Array(svids))])
}

/// `JWTBundlesResponse`.
pub(crate) fn jwt_bundles_response(resp: &JwtBundlesResponse) -> Value {
    object([("bundles", bytes_map(&resp.bundles))])
}

/// `ValidateJWTSVIDResponse`; absent `claims` are left out (Go prints null, then drops it).
pub(crate) fn validate_response(resp: &ValidateJwtsvidResponse) -> Value {
    let mut fields = vec![("spiffe_id", Value::from(resp.spiffe_id.clone()))];
    if let Some(claims) = &resp.claims {
        fields.push(("claims", struct_json(claims, true)));
    }
    object(fields)
}

/// A `google.protobuf.Struct` as JSON; `drop_nulls` removes null members and elements (what
/// SPIRE's JSON printer does). Integral numbers print without a fraction, like Go.
pub(crate) fn struct_json(s: &prost_types::Struct, drop_nulls: bool) -> Value {
    let map: BTreeMap<String, Value> = s
        .fields
        .iter()
        .filter(|(_, v)| !(drop_nulls && is_null(v)))
        .map(|(k, v)| (k.clone(), value_json(v, drop_nulls)))
        .collect();
    Value::Object(map.into_iter().collect())
}

fn value_json(v: &prost_types::Value, drop_nulls: bool) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StructValue(s)) => struct_json(s, drop_nulls),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .filter(|v| !(drop_nulls && is_null(v)))
                .map(|v| value_json(v, drop_nulls))
                .collect(),
        ),
    }
}

fn is_null(v: &prost_types::Value) -> bool {
    matches!(v.kind, None | Some(Kind::NullValue(_)))
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "only integral values within i64 range are cast"
)]
fn number(n: f64) -> Value {
    const I64_RANGE: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && n.abs() < I64_RANGE {
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(STANDARD.encode(bytes))
}

fn bytes_map(map: &std::collections::HashMap<String, Vec<u8>>) -> Value {
    let sorted: BTreeMap<&String, &Vec<u8>> = map.iter().collect();
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), b64(v)))
            .collect(),
    )
}

/// An object with its keys sorted whatever order they come in.
fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let sorted: BTreeMap<&str, Value> = fields.into_iter().collect();
    let map: Map<String, Value> = sorted.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Value::Object(map)
}

/// One message as a line, or several as one array line, encoded like Go's `json.Encoder`.
pub(crate) fn encode(mut messages: Vec<Value>) -> String {
    let value = if messages.len() == 1 {
        messages.remove(0)
    } else {
        Value::Array(messages)
    };
    let mut text = go_escape(&value.to_string());
    text.push('\n');
    text
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 even inside strings; those
/// characters appear nowhere else in compact JSON.
pub(crate) fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use signet_proto::workload::X509svid;

    use super::*;

    #[test]
    fn x509_response_uses_proto_names_and_base64() {
        let resp = X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: "spiffe://example.org/w".into(),
                x509_svid: vec![1, 2, 3].into(),
                x509_svid_key: vec![4].into(),
                bundle: vec![5, 6].into(),
                hint: String::new(),
            }],
            crl: vec![],
            federated_bundles: [("spiffe://other.org".to_owned(), vec![7])].into(),
        };
        assert_eq!(
            encode(vec![x509_svid_response(&resp)]),
            concat!(
                r#"{"crl":[],"federated_bundles":{"spiffe://other.org":"Bw=="},"svids":[{"#,
                r#""bundle":"BQY=","hint":"","spiffe_id":"spiffe://example.org/w","#,
                r#""x509_svid":"AQID","x509_svid_key":"BA=="}]}"#,
                "\n"
            )
        );
    }

    #[test]
    fn claims_drop_nulls_and_print_integers_plainly() {
        let num = |n| prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        };
        let claims = prost_types::Struct {
            fields: [
                ("exp".to_owned(), num(1_700_000_000.0)),
                ("x".to_owned(), num(0.5)),
                (
                    "n".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::NullValue(0)),
                    },
                ),
                (
                    "sub".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::StringValue("a<b".into())),
                    },
                ),
            ]
            .into(),
        };
        let resp = ValidateJwtsvidResponse {
            spiffe_id: "spiffe://example.org/w".into(),
            claims: Some(claims),
        };
        assert_eq!(
            encode(vec![validate_response(&resp)]),
            "{\"claims\":{\"exp\":1700000000,\"sub\":\"a\\u003cb\",\"x\":0.5},\
             \"spiffe_id\":\"spiffe://example.org/w\"}\n"
        );
    }
}
