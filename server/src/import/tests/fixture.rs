//! A SPIRE 1.13 server's state built in test code: a sqlite file with SPIRE's schema
//! version 23 tables (as gorm creates them: same tables, columns and types), keys.json in
//! SPIRE's disk KeyManager format, a self-signed CA with SPIRE's SKI method, the bundle and
//! journal protobufs, and a server.conf naming them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType,
};
use rusqlite::{Connection, params};
use signet_common::clock::{Clock, SystemClock};

use crate::import::proto;

/// SPIRE's tables, schema version 23.
const SCHEMA: &str = r#"
CREATE TABLE "federated_registration_entries" ("bundle_id" integer, "registered_entry_id" integer, PRIMARY KEY ("bundle_id", "registered_entry_id"));
CREATE TABLE "bundles" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "trust_domain" varchar(255) NOT NULL, "data" blob);
CREATE TABLE "attested_node_entries" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "spiffe_id" varchar(255), "data_type" varchar(255), "serial_number" varchar(255), "expires_at" datetime, "new_serial_number" varchar(255), "new_expires_at" datetime, "can_reattest" bool);
CREATE TABLE "attested_node_entries_events" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "spiffe_id" varchar(255));
CREATE TABLE "node_resolver_map_entries" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "spiffe_id" varchar(255), "type" varchar(255), "value" varchar(255));
CREATE TABLE "registered_entries" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "entry_id" varchar(255), "spiffe_id" varchar(255), "parent_id" varchar(255), "ttl" integer, "admin" bool, "downstream" bool, "expiry" bigint, "revision_number" bigint, "store_svid" bool, "hint" varchar(255), "jwt_svid_ttl" integer);
CREATE TABLE "registered_entries_events" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "entry_id" varchar(255));
CREATE TABLE "join_tokens" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "token" varchar(255), "expiry" bigint);
CREATE TABLE "selectors" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "registered_entry_id" integer, "type" varchar(255), "value" varchar(255));
CREATE TABLE "migrations" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "version" integer, "code_version" varchar(255));
CREATE TABLE "dns_names" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "registered_entry_id" integer, "value" varchar(255));
CREATE TABLE "federated_trust_domains" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "trust_domain" varchar(255) NOT NULL, "bundle_endpoint_url" varchar(255), "bundle_endpoint_profile" varchar(255), "endpoint_spiffe_id" varchar(255), "implicit" bool);
CREATE TABLE "ca_journals" ("id" integer primary key autoincrement, "created_at" datetime, "updated_at" datetime, "data" blob, "active_x509_authority_id" varchar(255), "active_jwt_authority_id" varchar(255));
"#;

/// How go-sqlite3 writes a `time.Time` (gorm's timestamps).
pub(super) const CREATED: &str = "2026-11-30 10:00:00.123456789+00:00";
/// Unix seconds of [`CREATED`].
pub(super) const CREATED_UNIX: i64 = 1_796_032_800;

/// The agent's serial as SPIRE stores it (decimal) and as Signet does (hex).
pub(super) const AGENT_SERIAL_DEC: &str = "340282366920938463463374607431768211455";
pub(super) const AGENT_SERIAL_HEX: &str = "ffffffffffffffffffffffffffffffff";

/// entry_id, spiffe_id, parent_id, ttl, admin, downstream, expiry, revision_number,
/// store_svid, hint, jwt_svid_ttl.
type EntryValues = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    bool,
    bool,
    i64,
    i64,
    bool,
    &'static str,
    i64,
);

/// A SPIRE server's files in a temp dir.
pub(super) struct SpireFixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) conf: PathBuf,
    pub(super) db: PathBuf,
    pub(super) keys_path: PathBuf,
    pub(super) ca_der: Vec<u8>,
    pub(super) ca_ski_hex: String,
    pub(super) jwt_kid: String,
    pub(super) jwt_spki: Vec<u8>,
    pub(super) federated_der: Vec<u8>,
}

fn sha1_hex(bits: &[u8]) -> (Vec<u8>, String) {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bits);
    let hex = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (d.as_ref().to_vec(), hex)
}

fn ca_cert(td: &str, key: &KeyPair, ski: Vec<u8>) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CountryName, "US");
    p.distinguished_name
        .push(DnType::OrganizationName, "SPIFFE");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
    p.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    let now = time::OffsetDateTime::from_unix_timestamp(SystemClock.unix_now()).unwrap();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::hours(23);
    p.self_signed(key).unwrap().der().to_vec()
}

impl SpireFixture {
    /// Everything a SPIRE 1.13 server with sqlite and a disk KeyManager leaves behind: three
    /// entries (one with every field), two agents (one banned), a join token, the bundle, a
    /// federated bundle with its relationship, and the CA journal.
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("datastore.sqlite3");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let keys_path = dir.path().join("keys.json");

        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (ski, ca_ski_hex) = sha1_hex(ca_key.public_key_raw());
        let ca_der = ca_cert("example.org", &ca_key, ski);
        let jwt_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let jwt_spki = jwt_key.subject_public_key_info();
        let jwt_kid = "kqvXpSGpQZJbHbUYQwlnZ9w7rI3sJeZH".to_owned();
        let fed_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (fed_ski, _) = sha1_hex(fed_key.public_key_raw());
        let federated_der = ca_cert("other.org", &fed_key, fed_ski);

        let keys = serde_json::json!({ "keys": {
            "x509-CA-A": STANDARD.encode(ca_key.serialize_der()),
            "JWT-Signer-A": STANDARD.encode(jwt_key.serialize_der()),
        }});
        std::fs::write(&keys_path, serde_json::to_vec_pretty(&keys).unwrap()).unwrap();

        let not_after = SystemClock.unix_now() + 23 * 3600;
        let issued_at = not_after - 24 * 3600;
        let own = proto::Bundle {
            trust_domain_id: "spiffe://example.org".into(),
            root_cas: vec![proto::Certificate {
                der_bytes: ca_der.clone(),
                tainted_key: false,
            }],
            jwt_signing_keys: vec![proto::PublicKey {
                pkix_bytes: jwt_spki.clone(),
                kid: jwt_kid.clone(),
                not_after,
                tainted_key: false,
            }],
            refresh_hint: 0,
            sequence_number: 3,
        };
        let fed = proto::Bundle {
            trust_domain_id: "spiffe://other.org".into(),
            root_cas: vec![proto::Certificate {
                der_bytes: federated_der.clone(),
                tainted_key: false,
            }],
            jwt_signing_keys: vec![],
            refresh_hint: 300,
            sequence_number: 7,
        };
        let journal = proto::Entries {
            x509_cas: vec![proto::X509CaEntry {
                slot_id: "A".into(),
                issued_at,
                certificate: ca_der.clone(),
                upstream_chain: vec![],
                status: proto::STATUS_ACTIVE,
                authority_id: ca_ski_hex.clone(),
                not_after,
                upstream_authority_id: String::new(),
            }],
            jwt_keys: vec![proto::JwtKeyEntry {
                slot_id: "A".into(),
                issued_at,
                not_after,
                kid: jwt_kid.clone(),
                public_key: jwt_spki.clone(),
                status: proto::STATUS_ACTIVE,
                authority_id: jwt_kid.clone(),
            }],
        };

        let c = Connection::open(&db).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute(
            "INSERT INTO migrations (created_at, updated_at, version, code_version) VALUES (?1, ?1, 23, '1.13.3')",
            params![CREATED],
        )
        .unwrap();
        for (td, b) in [("spiffe://example.org", &own), ("spiffe://other.org", &fed)] {
            c.execute(
                "INSERT INTO bundles (created_at, updated_at, trust_domain, data) VALUES (?1, ?1, ?2, ?3)",
                params![CREATED, td, b.encode_to_vec()],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO ca_journals (created_at, updated_at, data, active_x509_authority_id, active_jwt_authority_id) VALUES (?1, ?1, ?2, ?3, ?4)",
            params![CREATED, journal.encode_to_vec(), ca_ski_hex, jwt_kid],
        )
        .unwrap();
        let agent = "spiffe://example.org/spire/agent/join_token/tok-1";
        let entries: [EntryValues; 3] = [
            (
                "entry-full",
                "spiffe://example.org/web",
                agent,
                600,
                true,
                true,
                4_102_444_800,
                4,
                true,
                "web-hint",
                120,
            ),
            (
                "entry-node",
                "spiffe://example.org/cluster",
                "spiffe://example.org/spire/server",
                0,
                false,
                false,
                0,
                0,
                false,
                "",
                0,
            ),
            (
                "entry-fed",
                "spiffe://example.org/fed",
                "spiffe://example.org/cluster",
                0,
                false,
                false,
                0,
                1,
                false,
                "",
                0,
            ),
        ];
        for e in entries {
            c.execute(
                "INSERT INTO registered_entries (created_at, updated_at, entry_id, spiffe_id, parent_id, ttl, admin, downstream, expiry, revision_number, store_svid, hint, jwt_svid_ttl) \
                 VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![CREATED, e.0, e.1, e.2, e.3, e.4, e.5, e.6, e.7, e.8, e.9, e.10],
            )
            .unwrap();
        }
        for (pk, t, v) in [
            (1, "unix", "uid:1000"),
            (1, "unix", "gid:0"),
            (2, "join_token", "tok-1"),
            (3, "unix", "uid:1001"),
        ] {
            c.execute(
                "INSERT INTO selectors (created_at, updated_at, registered_entry_id, type, value) VALUES (?1, ?1, ?2, ?3, ?4)",
                params![CREATED, pk, t, v],
            )
            .unwrap();
        }
        for v in ["web.example.org", "alt.example.org"] {
            c.execute(
                "INSERT INTO dns_names (created_at, updated_at, registered_entry_id, value) VALUES (?1, ?1, 1, ?2)",
                params![CREATED, v],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO federated_registration_entries (bundle_id, registered_entry_id) VALUES (2, 3)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO attested_node_entries (created_at, updated_at, spiffe_id, data_type, serial_number, expires_at, new_serial_number, new_expires_at, can_reattest) \
             VALUES (?1, ?1, ?2, 'join_token', ?3, '2026-12-01 10:00:00+00:00', '255', '2026-12-01 11:30:00.5+00:00', 0)",
            params![CREATED, agent, AGENT_SERIAL_DEC],
        )
        .unwrap();
        c.execute(
            "INSERT INTO attested_node_entries (created_at, updated_at, spiffe_id, data_type, serial_number, expires_at, new_serial_number, new_expires_at, can_reattest) \
             VALUES (?1, ?1, 'spiffe://example.org/spire/agent/x509pop/banned', 'x509pop', '', '2026-12-01 10:00:00+00:00', '', NULL, 1)",
            params![CREATED],
        )
        .unwrap();
        c.execute(
            "INSERT INTO node_resolver_map_entries (created_at, updated_at, spiffe_id, type, value) VALUES (?1, ?1, ?2, 'join_token', 'tok-1')",
            params![CREATED, agent],
        )
        .unwrap();
        c.execute(
            "INSERT INTO join_tokens (created_at, updated_at, token, expiry) VALUES (?1, ?1, 'tok-2', 4102444800)",
            params![CREATED],
        )
        .unwrap();
        c.execute(
            "INSERT INTO federated_trust_domains (created_at, updated_at, trust_domain, bundle_endpoint_url, bundle_endpoint_profile, endpoint_spiffe_id, implicit) \
             VALUES (?1, ?1, 'other.org', 'https://other.org:8443', 'https_web', '', 0)",
            params![CREATED],
        )
        .unwrap();
        drop(c);

        let conf = dir.path().join("server.conf");
        std::fs::write(
            &conf,
            format!(
                r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "8081"
    trust_domain = "example.org"
    data_dir = "{data}"
    ca_ttl = "24h"
}}
plugins {{
    DataStore "sql" {{ plugin_data {{ database_type = "sqlite3" connection_string = "{db}" }} }}
    KeyManager "disk" {{ plugin_data = {{ keys_path = "{keys}" }} }}
    NodeAttestor "x509pop" {{ plugin_data {{ ca_bundle_path = "/opt/ca.pem" }} }}
    NodeAttestor "join_token" {{ plugin_data {{}} }}
}}
"#,
                data = dir.path().join("data").display(),
                db = db.display(),
                keys = keys_path.display(),
            ),
        )
        .unwrap();
        Self {
            dir,
            conf,
            db,
            keys_path,
            ca_der,
            ca_ski_hex,
            jwt_kid,
            jwt_spki,
            federated_der,
        }
    }

    /// A new self-signed CA for `td` with SPIRE's SKI: (key, cert DER, hex SKI).
    pub(super) fn new_ca(td: &str) -> (KeyPair, Vec<u8>, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (ski, hex) = sha1_hex(key.public_key_raw());
        let der = ca_cert(td, &key, ski);
        (key, der, hex)
    }

    /// Replaces keys.json, the own bundle row and the journal row (as a rotation would).
    pub(super) fn rewrite(
        &self,
        keys: &serde_json::Value,
        bundle: &proto::Bundle,
        journal: &proto::Entries,
        active_x509: &str,
    ) {
        std::fs::write(&self.keys_path, serde_json::to_vec_pretty(keys).unwrap()).unwrap();
        let c = Connection::open(&self.db).unwrap();
        c.execute(
            "UPDATE bundles SET data = ?1 WHERE trust_domain = 'spiffe://example.org'",
            params![bundle.encode_to_vec()],
        )
        .unwrap();
        c.execute(
            "UPDATE ca_journals SET data = ?1, active_x509_authority_id = ?2",
            params![journal.encode_to_vec(), active_x509],
        )
        .unwrap();
    }

    /// Runs SQL against the fixture's database.
    pub(super) fn sql(&self, sql: &str) {
        Connection::open(&self.db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    /// The default target store directory.
    pub(super) fn store_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("datastore")
    }

    /// The fixture's root.
    pub(super) fn root(&self) -> &Path {
        self.dir.path()
    }
}
