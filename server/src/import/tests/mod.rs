//! `import spire` on a SPIRE sqlite datastore built from SPIRE's schema (fixture), read into
//! a real sled store and key file, then resumed by Signet's CA.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_common::clock::{Clock, SystemClock};
use signet_common::id::{parse_id, parse_trust_domain};
use signet_common::selector::Selector;

use super::convert::decimal_to_hex;
use super::{ImportArgs, ImportError, import_spire};
use crate::ca::{Ca, CaConfig, CaSubject, JwtSvidParams};
use crate::datastore::DataStore;
use crate::datastore::sled::SledStore;
use crate::keys::disk::DiskKeyManager;
use crate::keys::{KeyManager, KeyType};

mod fixture;
mod real_spire;

use fixture::{AGENT_SERIAL_HEX, CREATED_UNIX, SpireFixture};

fn now() -> SystemTime {
    SystemClock.now()
}

fn args(fx: &SpireFixture) -> ImportArgs {
    args_for(&fx.conf)
}

fn args_for(conf: &std::path::Path) -> ImportArgs {
    ImportArgs {
        config: conf.to_owned(),
        target_config: None,
        force: false,
        expand_env: false,
    }
}

fn ca_config() -> CaConfig {
    CaConfig {
        trust_domain: parse_trust_domain("example.org").unwrap(),
        key_type: KeyType::EcP256,
        ca_ttl: Duration::from_secs(24 * 3600),
        ca_subject: CaSubject::default(),
        default_x509_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        agent_ttl: Duration::from_secs(3600),
        jwt_issuer: None,
        upstream: None,
        journal_key: crate::config::JOURNAL_KEY.into(),
    }
}

#[tokio::test]
async fn imports_every_record_and_the_ca_resumes_spires_authorities() {
    let fx = SpireFixture::new();
    let keys_before = std::fs::read(&fx.keys_path).unwrap();
    let db_before = std::fs::read(&fx.db).unwrap();
    let report = import_spire(&args(&fx), now()).await.unwrap();
    assert_eq!(
        (
            report.entries,
            report.agents,
            report.banned_agents,
            report.join_tokens
        ),
        (3, 2, 1, 1)
    );
    assert_eq!((report.x509_roots, report.jwt_keys), (1, 1));
    assert_eq!(report.federated_bundles, vec!["other.org".to_owned()]);
    assert_eq!(report.x509_authority, (fx.ca_ski_hex.clone(), 1));
    assert_eq!(report.jwt_authority, (fx.jwt_kid.clone(), 1));
    assert_eq!(report.keys, (fx.keys_path.clone(), true));
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("other.org at https://other.org:8443"));
    let text = report.to_string();
    assert!(text.contains("Registration entries: 3\n") && text.contains("Agents: 2 (1 banned)\n"));
    assert_eq!(
        std::fs::read(&fx.keys_path).unwrap(),
        keys_before,
        "SPIRE's keys.json is used as is"
    );
    assert_eq!(
        std::fs::read(&fx.db).unwrap(),
        db_before,
        "SPIRE's datastore is not changed"
    );

    for f in std::fs::read_dir(fx.store_dir().join(crate::datastore::sled::DB_DIR)).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(5).any(|w| w == b"tok-2"),
            "the imported join token is stored as a digest, never in the clear"
        );
    }
    let store = Arc::new(SledStore::open(&fx.store_dir()).unwrap());
    let full = store.entry("entry-full").await.unwrap().unwrap();
    assert_eq!(
        full.spiffe_id,
        parse_id("spiffe://example.org/web").unwrap()
    );
    assert_eq!(
        full.parent_id,
        parse_id("spiffe://example.org/spire/agent/join_token/tok-1").unwrap()
    );
    let sels: Vec<String> = full.selectors.iter().map(|s| s.to_string()).collect();
    assert_eq!(sels, ["unix:gid:0", "unix:uid:1000"]);
    assert_eq!(full.dns_names, ["web.example.org", "alt.example.org"]);
    assert_eq!((full.x509_svid_ttl, full.jwt_svid_ttl), (600, 120));
    assert!(full.admin && full.downstream && full.store_svid);
    assert_eq!(full.hint, "web-hint");
    assert_eq!(full.expires_at, 4_102_444_800);
    assert_eq!(full.revision_number, 4);
    assert_eq!(full.created_at, CREATED_UNIX);
    assert!(full.federates_with.is_empty());
    let fed = store.entry("entry-fed").await.unwrap().unwrap();
    assert_eq!(fed.federates_with, ["other.org"]);
    assert_eq!(fed.revision_number, 1);
    let node_alias = store.entry("entry-node").await.unwrap().unwrap();
    assert_eq!(
        node_alias.parent_id,
        parse_id("spiffe://example.org/spire/server").unwrap()
    );
    assert_eq!(store.list_entries().await.unwrap().len(), 3);

    let agent = store
        .node(&parse_id("spiffe://example.org/spire/agent/join_token/tok-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.attestation_type, "join_token");
    assert_eq!(agent.serial, AGENT_SERIAL_HEX);
    assert_eq!(agent.new_serial, "ff");
    assert_eq!(
        (agent.expires_at, agent.new_expires_at),
        (1_796_119_200, 1_796_124_600)
    );
    assert!(!agent.can_reattest);
    assert_eq!(
        agent.selectors,
        [Selector::new("join_token", "tok-1").unwrap()]
    );
    let banned = store
        .node(&parse_id("spiffe://example.org/spire/agent/x509pop/banned").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(banned.is_banned() && banned.can_reattest && banned.new_expires_at == 0);

    let token = store.take_join_token("tok-2").await.unwrap().unwrap();
    assert_eq!(token.expires_at, 4_102_444_800);

    let own = store
        .bundle(&parse_trust_domain("example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.x509_authorities.len(), 1);
    assert_eq!(own.x509_authorities[0].der, fx.ca_der);
    assert_eq!(own.jwt_authorities[0].key_id, fx.jwt_kid);
    assert_eq!(own.jwt_authorities[0].public_key, fx.jwt_spki);
    assert_eq!(own.sequence_number, 3);
    let other = store
        .bundle(&parse_trust_domain("other.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.x509_authorities[0].der, fx.federated_der);
    assert_eq!((other.refresh_hint, other.sequence_number), (300, 7));

    // Signet's CA started on the result signs with SPIRE's CA and JWT key.
    let keys: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::open(&fx.keys_path).unwrap());
    let ca = Ca::new(ca_config(), Arc::new(SystemClock), keys, store.clone())
        .await
        .unwrap();
    assert_eq!(
        ca.active_x509_authority().unwrap().authority_id,
        fx.ca_ski_hex
    );
    assert_eq!(ca.active_x509_ca_der().unwrap(), fx.ca_der);
    let jwt = ca
        .sign_jwt_svid(JwtSvidParams {
            spiffe_id: parse_id("spiffe://example.org/web").unwrap(),
            audience: vec!["aud".into()],
            ttl: Duration::ZERO,
        })
        .unwrap();
    let header = jsonwebtoken::decode_header(&jwt.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(fx.jwt_kid.as_str()));
    let after = store
        .bundle(&parse_trust_domain("example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.x509_authorities.len(), 1, "no new CA was minted");
}

#[tokio::test]
async fn a_separate_target_gets_the_keys_written_private() {
    let fx = SpireFixture::new();
    let target_dir = fx.root().join("signet");
    let conf = fx.root().join("signet.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server {{
    trust_domain = "example.org"
    data_dir = "{d}"
}}
plugins {{
    DataStore "sled" {{ plugin_data {{}} }}
    KeyManager "disk" {{ plugin_data {{ keys_path = "{d}/keys.json" }} }}
    NodeAttestor "join_token" {{ plugin_data {{}} }}
}}
"#,
            d = target_dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&target_dir).unwrap();
    let mut a = args(&fx);
    a.target_config = Some(conf.clone());
    let report = import_spire(&a, now()).await.unwrap();
    let keys_path = target_dir.join("keys.json");
    assert_eq!(report.keys, (keys_path.clone(), false));
    assert_eq!(
        report.target,
        format!(
            "the Signet store {}",
            target_dir.join("datastore").display()
        )
    );
    let mode = std::fs::metadata(&keys_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let km = DiskKeyManager::open(&keys_path).unwrap();
    assert_eq!(km.key_ids(), ["JWT-Signer-A", "x509-CA-A"]);
    assert!(!fx.store_dir().exists(), "the default target is untouched");

    // A second import finds the target non-empty (store and key file) and changes nothing.
    let err = import_spire(&a, now()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImportError::NotEmpty(_)));
    assert!(
        msg.contains("already holds 3 registration entries, 2 agents, 2 bundles, a CA journal")
            && msg.contains("already holds keys (JWT-Signer-A, x509-CA-A)")
            && msg.ends_with("nothing was imported (pass --force to import over it)"),
        "{msg}"
    );
    // A target of another trust domain is refused.
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace("\"example.org\"", "\"other.org\"")).unwrap();
    let msg = import_spire(&a, now()).await.unwrap_err().to_string();
    assert!(
        msg.contains("trust domain other.org is not SPIRE's example.org"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_postgresql_target_is_written_under_this_servers_journal_key() {
    use crate::datastore::postgres::PgStore;
    use crate::datastore::postgres::testing::PgCluster;

    let pg = PgCluster::start();
    let cs = pg.create_database().await;
    let fx = SpireFixture::new();
    let data_dir = fx.root().join("signet");
    let conf = fx.root().join("signet.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server {{
    trust_domain = "example.org"
    data_dir = "{d}"
}}
plugins {{
    DataStore "sql" {{ plugin_data {{ database_type = "postgres" connection_string = "{cs}" }} }}
    KeyManager "disk" {{ plugin_data {{ keys_path = "{d}/keys.json" }} }}
    NodeAttestor "join_token" {{ plugin_data {{}} }}
}}
"#,
            d = data_dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut a = args(&fx);
    a.target_config = Some(conf.clone());
    let report = import_spire(&a, now()).await.unwrap();
    assert!(
        report.target.contains("PostgreSQL at "),
        "{}",
        report.target
    );
    assert_eq!(
        (report.entries, report.agents, report.join_tokens),
        (3, 2, 1)
    );

    let journal_key = std::fs::read_to_string(data_dir.join("server_id")).unwrap();
    let config = crate::config::Config::load(&crate::config::RunArgs {
        common: signet_common::config::CommonOverrides::with_config(&conf),
        ..Default::default()
    })
    .unwrap();
    let crate::config::DataStoreConfig::Sql { options, .. } = config.datastore else {
        panic!("not a SQL store");
    };
    let store: Arc<dyn DataStore> = Arc::new(PgStore::connect(&options).await.unwrap());
    let e = store.entry("entry-full").await.unwrap().unwrap();
    assert_eq!((e.revision_number, e.created_at), (4, CREATED_UNIX));
    assert_eq!(store.list_nodes().await.unwrap().len(), 2);
    let keys: Arc<dyn KeyManager> =
        Arc::new(DiskKeyManager::open(&data_dir.join("keys.json")).unwrap());
    let mut cfg = ca_config();
    cfg.journal_key = journal_key.trim().to_owned();
    let ca = Ca::new(cfg, Arc::new(SystemClock), keys, store.clone())
        .await
        .unwrap();
    assert_eq!(ca.active_x509_ca_der().unwrap(), fx.ca_der);

    // The keys file now holds keys and the database entries: a second import is refused.
    std::fs::remove_file(data_dir.join("keys.json")).unwrap();
    let msg = import_spire(&a, now()).await.unwrap_err().to_string();
    assert!(
        msg.contains("already holds 3 registration entries, 2 agents, 2 bundles, a CA journal"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_non_empty_target_is_refused_unless_forced() {
    let fx = SpireFixture::new();
    import_spire(&args(&fx), now()).await.unwrap();
    {
        let store = SledStore::open(&fx.store_dir()).unwrap();
        let mut e = store.entry("entry-full").await.unwrap().unwrap();
        e.hint = "changed in Signet".into();
        store.update_entry(e).await.unwrap();
    }
    let err = import_spire(&args(&fx), now()).await.unwrap_err();
    assert!(matches!(err, ImportError::NotEmpty(_)), "{err}");
    {
        let store = SledStore::open(&fx.store_dir()).unwrap();
        let e = store.entry("entry-full").await.unwrap().unwrap();
        assert_eq!(
            (e.hint.as_str(), e.revision_number),
            ("changed in Signet", 5)
        );
    }
    let mut a = args(&fx);
    a.force = true;
    let report = import_spire(&a, now()).await.unwrap();
    assert_eq!(report.entries, 3);
    let store = SledStore::open(&fx.store_dir()).unwrap();
    let e = store.entry("entry-full").await.unwrap().unwrap();
    assert_eq!((e.hint.as_str(), e.revision_number), ("web-hint", 4));
    assert_eq!(store.list_entries().await.unwrap().len(), 3);
}

#[tokio::test]
async fn another_schema_version_is_refused_and_nothing_is_written() {
    let fx = SpireFixture::new();
    fx.sql("UPDATE migrations SET version = 24, code_version = '1.14.0'");
    let err = import_spire(&args(&fx), now()).await.unwrap_err();
    assert!(matches!(err, ImportError::SchemaVersion { found: 24, .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("has schema version 24 (SPIRE 1.14.0): only schema version 23 (SPIRE 1.8 to 1.13) can be imported"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(!fx.store_dir().exists(), "nothing written");

    fx.sql("DROP TABLE migrations");
    let msg = import_spire(&args(&fx), now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not a SPIRE datastore (it has no migrations table)"),
        "{msg}"
    );
    assert!(!fx.store_dir().exists());
}

#[tokio::test]
async fn a_missing_or_foreign_key_file_is_refused_and_nothing_is_written() {
    let fx = SpireFixture::new();
    let keys = std::fs::read(&fx.keys_path).unwrap();
    std::fs::remove_file(&fx.keys_path).unwrap();
    let err = import_spire(&args(&fx), now()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImportError::Keys { .. }));
    assert!(
        msg.starts_with(&format!(
            "SPIRE key file {}: no such file",
            fx.keys_path.display()
        )),
        "{msg}"
    );
    assert!(!fx.store_dir().exists(), "nothing written");

    // Keys of another server: no journal names them.
    let other = serde_json::json!({"keys": {"x509-CA-A": base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rcgen::KeyPair::generate().unwrap().serialize_der())}});
    std::fs::write(&fx.keys_path, other.to_string()).unwrap();
    let msg = import_spire(&args(&fx), now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("none of its keys is the active X.509 CA of any of the 1 CA journal(s)"),
        "{msg}"
    );
    assert!(!fx.store_dir().exists());

    // The JWT key missing from an otherwise right file.
    let mut v: serde_json::Value = serde_json::from_slice(&keys).unwrap();
    v["keys"].as_object_mut().unwrap().remove("JWT-Signer-A");
    std::fs::write(&fx.keys_path, v.to_string()).unwrap();
    let msg = import_spire(&args(&fx), now())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("key JWT-Signer-A is missing"), "{msg}");
    assert!(!fx.store_dir().exists());
}

#[tokio::test]
async fn config_problems_are_one_line_each() {
    let fx = SpireFixture::new();
    let text = std::fs::read_to_string(&fx.conf).unwrap();
    let cases = [
        (
            text.replace("\"sqlite3\"", "\"mysql\""),
            "database_type \"mysql\" cannot be imported (sqlite3 or postgres)",
        ),
        (
            text.replace("KeyManager \"disk\"", "KeyManager \"memory\""),
            "SPIRE kept its CA keys in memory",
        ),
        (
            text.replace(
                "trust_domain = \"example.org\"",
                "trust_domain = \"third.org\"",
            ),
            "no bundle for the server's trust domain third.org",
        ),
    ];
    for (conf, want) in cases {
        std::fs::write(&fx.conf, conf).unwrap();
        let msg = import_spire(&args(&fx), now())
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(want) && !msg.contains('\n'), "{msg}");
        assert!(!fx.store_dir().exists());
    }
    std::fs::write(
        &fx.conf,
        text.replace(&fx.db.display().to_string(), "/nonexistent/db.sqlite3"),
    )
    .unwrap();
    let msg = import_spire(&args(&fx), now())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "SPIRE datastore /nonexistent/db.sqlite3: no such file");
}

#[tokio::test]
async fn an_expired_active_ca_is_refused() {
    let fx = SpireFixture::new();
    let later = now() + Duration::from_secs(30 * 24 * 3600);
    let msg = import_spire(&args(&fx), later)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("the certificate has expired"), "{msg}");
    assert!(!fx.store_dir().exists());
}

/// Mid-rotation: A was active and is now OLD (its key replaced by the prepared A), B is
/// active, the new A is prepared; the JWT key B is prepared next to the active A.
#[tokio::test]
async fn the_rotation_state_carries_over() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use prost::Message as _;
    use rcgen::PublicKeyData as _;

    use crate::import::proto;

    let fx = SpireFixture::new();
    let (key_b, cert_b, ski_b) = SpireFixture::new_ca("example.org");
    let (key_a2, cert_a2, ski_a2) = SpireFixture::new_ca("example.org");
    let jwt_b = rcgen::KeyPair::generate().unwrap();
    let mut keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fx.keys_path).unwrap()).unwrap();
    keys["keys"]["x509-CA-A"] = STANDARD.encode(key_a2.serialize_der()).into();
    keys["keys"]["x509-CA-B"] = STANDARD.encode(key_b.serialize_der()).into();
    keys["keys"]["JWT-Signer-B"] = STANDARD.encode(jwt_b.serialize_der()).into();
    let db = rusqlite::Connection::open(&fx.db).unwrap();
    let old: Vec<u8> = db
        .query_row("SELECT data FROM ca_journals", [], |r| r.get(0))
        .unwrap();
    let mut journal = proto::Entries::decode(old.as_slice()).unwrap();
    let old_bundle: Vec<u8> = db
        .query_row(
            "SELECT data FROM bundles WHERE trust_domain = 'spiffe://example.org'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut bundle = proto::Bundle::decode(old_bundle.as_slice()).unwrap();
    let a = journal.x509_cas[0].clone();
    journal.x509_cas[0].status = 4;
    for (slot, cert, ski, status) in [("B", &cert_b, &ski_b, 3), ("A", &cert_a2, &ski_a2, 2)] {
        journal.x509_cas.push(proto::X509CaEntry {
            slot_id: slot.into(),
            certificate: cert.clone(),
            status,
            authority_id: ski.clone(),
            ..a.clone()
        });
        bundle.root_cas.push(proto::Certificate {
            der_bytes: cert.clone(),
            tainted_key: false,
        });
    }
    let kid_b = "B0000000000000000000000000000000".to_owned();
    journal.jwt_keys.push(proto::JwtKeyEntry {
        slot_id: "B".into(),
        kid: kid_b.clone(),
        public_key: jwt_b.subject_public_key_info(),
        status: 2,
        authority_id: kid_b.clone(),
        ..journal.jwt_keys[0].clone()
    });
    bundle.jwt_signing_keys.push(proto::PublicKey {
        pkix_bytes: jwt_b.subject_public_key_info(),
        kid: kid_b.clone(),
        not_after: 0,
        tainted_key: false,
    });
    drop(db);
    fx.rewrite(&keys, &bundle, &journal, &ski_b);

    let report = import_spire(&args(&fx), now()).await.unwrap();
    assert_eq!(report.x509_authority, (ski_b.clone(), 3));
    assert_eq!(report.jwt_authority, (fx.jwt_kid.clone(), 2));
    assert_eq!(report.x509_roots, 3);

    let store = Arc::new(SledStore::open(&fx.store_dir()).unwrap());
    let keys: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::open(&fx.keys_path).unwrap());
    let ca = Ca::new(ca_config(), Arc::new(SystemClock), keys, store.clone())
        .await
        .unwrap();
    let x509 = ca.x509_authority_states().await;
    assert_eq!(x509.active.unwrap().authority_id, ski_b);
    assert_eq!(x509.prepared.unwrap().authority_id, ski_a2);
    // As in SPIRE, the next slot holds the prepared authority, so no old one is reported.
    assert_eq!(x509.old, None);
    assert_eq!(ca.active_x509_ca_der().unwrap(), cert_b);
    let jwt = ca.jwt_authority_states().await;
    assert_eq!(jwt.active.unwrap().authority_id, fx.jwt_kid);
    assert_eq!(jwt.prepared.unwrap().authority_id, kid_b);
    let after = store
        .bundle(&parse_trust_domain("example.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.x509_authorities.len(),
        3,
        "nothing minted, nothing dropped"
    );
    assert_eq!(after.jwt_authorities.len(), 2);
}

#[test]
fn go_sqlite3_timestamps_are_read_as_spire_reports_them() {
    use crate::import::source::parse_time;
    let t = "2026-11-30 10:00:00.123456789+00:00";
    assert_eq!(parse_time(t, true), Some(CREATED_UNIX));
    assert_eq!(
        parse_time("2026-11-30 10:00:00.5+00:00", true),
        Some(CREATED_UNIX + 1)
    );
    assert_eq!(
        parse_time("2026-11-30 10:00:00.5+00:00", false),
        Some(CREATED_UNIX)
    );
    assert_eq!(
        parse_time("2026-11-30 10:00:00.499999999Z", true),
        Some(CREATED_UNIX)
    );
    assert_eq!(
        parse_time("2026-11-30 11:30:00+01:30", false),
        Some(CREATED_UNIX)
    );
    assert_eq!(
        parse_time("2026-11-30T03:00:00-07:00", false),
        Some(CREATED_UNIX)
    );
    assert_eq!(parse_time("2026-11-30 10:00:00", false), Some(CREATED_UNIX));
    for bad in [
        "",
        "2026-11-30",
        "2026-13-30 10:00:00",
        "2026-11-30 10:00:00 UTC",
        "x026-11-30 10:00:00",
    ] {
        assert_eq!(parse_time(bad, false), None, "{bad}");
    }
}

#[test]
fn decimal_serials_become_signets_hex() {
    assert_eq!(decimal_to_hex("").unwrap(), "");
    assert_eq!(decimal_to_hex("0").unwrap(), "0");
    assert_eq!(decimal_to_hex("255").unwrap(), "ff");
    assert_eq!(decimal_to_hex("256").unwrap(), "100");
    assert_eq!(
        decimal_to_hex("340282366920938463463374607431768211455").unwrap(),
        "ffffffffffffffffffffffffffffffff"
    );
    assert_eq!(
        decimal_to_hex("123456789012345678901234567890").unwrap(),
        format!("{:x}", 123_456_789_012_345_678_901_234_567_890_u128)
    );
    assert!(decimal_to_hex("12a").is_err());
    assert!(decimal_to_hex("-1").is_err());
}
