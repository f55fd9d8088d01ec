//! The JSON files `entry create|update --data` and `entry delete --file` read. SPIRE decodes
//! them with Go's `encoding/json`, so keys match case-insensitively, unknown keys are
//! ignored and `null` means "zero".

use anyhow::Context as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use signet_common::id;
use signet_proto::types;

/// `{"entries": [...]}` (SPIRE's `common.RegistrationEntries`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Entries {
    entries: Vec<DataEntry>,
}

/// One `common.RegistrationEntry`, keys lower-cased.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DataEntry {
    selectors: Vec<DataSelector>,
    parent_id: String,
    spiffe_id: String,
    x509_svid_ttl: i32,
    federates_with: Vec<String>,
    entry_id: String,
    admin: bool,
    downstream: bool,
    #[serde(rename = "entryexpiry")]
    entry_expiry: i64,
    dns_names: Vec<String>,
    revision_number: i64,
    store_svid: bool,
    jwt_svid_ttl: i32,
    hint: String,
    created_at: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DataSelector {
    r#type: String,
    value: String,
}

/// `{"ids": [...]}` (a `BatchDeleteEntryRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteIds {
    ids: Vec<String>,
}

/// Parses a registration entries file into API entries.
pub(super) fn parse_entries(bytes: &[u8]) -> anyhow::Result<Vec<types::Entry>> {
    let file: Entries = decode(bytes)?;
    file.entries.into_iter().map(to_proto).collect()
}

/// Parses a batch-delete file into entry IDs.
pub(super) fn parse_delete_ids(bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let file: DeleteIds = decode(bytes)?;
    Ok(file.ids)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    let value: Value = serde_json::from_slice(bytes).context("invalid JSON")?;
    serde_json::from_value(go_keys(value)).context("invalid JSON")
}

/// Lower-cases object keys and drops nulls, approximating Go's case-insensitive decoding.
fn go_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_lowercase(), go_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(go_keys).collect()),
        other => other,
    }
}

fn to_proto(e: DataEntry) -> anyhow::Result<types::Entry> {
    let spiffe_id = id::parse_id(&e.spiffe_id).context("invalid SPIFFE ID")?;
    let parent_id = id::parse_id(&e.parent_id).context("invalid parent ID")?;
    let federates_with = e
        .federates_with
        .iter()
        .map(|td| {
            id::parse_trust_domain(td)
                .map(|td| td.to_string())
                .context("invalid federated trust domain")
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(types::Entry {
        id: e.entry_id,
        spiffe_id: Some((&spiffe_id).into()),
        parent_id: Some((&parent_id).into()),
        selectors: e
            .selectors
            .into_iter()
            .map(|s| types::Selector {
                r#type: s.r#type,
                value: s.value,
            })
            .collect(),
        x509_svid_ttl: e.x509_svid_ttl,
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        expires_at: e.entry_expiry,
        dns_names: e.dns_names,
        revision_number: e.revision_number,
        store_svid: e.store_svid,
        jwt_svid_ttl: e.jwt_svid_ttl,
        hint: e.hint,
        created_at: e.created_at,
        additional_attributes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spire_registration_files() {
        let file = br#"{"entries": [
            {"selectors": [{"type": "unix", "value": "uid:1111"}],
             "spiffe_id": "spiffe://example.org/Blog",
             "parent_id": "spiffe://example.org/spire/agent/join_token/TokenBlog",
             "x509_svid_ttl": 200, "jwt_svid_ttl": 30, "admin": true,
             "federates_with": ["spiffe://other.org"], "entryExpiry": 99,
             "Hint": "internal", "dns_names": null, "unknown": 1}
        ]}"#;
        let entries = parse_entries(file).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.spiffe_id.as_ref().unwrap().path, "/Blog");
        assert_eq!(
            e.parent_id.as_ref().unwrap().path,
            "/spire/agent/join_token/TokenBlog"
        );
        assert_eq!(e.selectors[0].value, "uid:1111");
        assert_eq!((e.x509_svid_ttl, e.jwt_svid_ttl), (200, 30));
        assert!(e.admin);
        assert_eq!(e.federates_with, ["other.org"]);
        assert_eq!(e.expires_at, 99);
        assert_eq!(e.hint, "internal");
        assert!(e.dns_names.is_empty());
    }

    #[test]
    fn bad_ids_in_files_are_named() {
        let err =
            parse_entries(br#"{"entries": [{"spiffe_id": "nope", "parent_id": "spiffe://a/b"}]}"#)
                .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("invalid SPIFFE ID: "),
            "{err:#}"
        );
        assert!(parse_entries(b"{not json").is_err());
    }

    #[test]
    fn reads_delete_files() {
        assert_eq!(
            parse_delete_ids(br#"{"Ids": ["entry-0", "entry-1"]}"#).unwrap(),
            ["entry-0", "entry-1"]
        );
    }
}
