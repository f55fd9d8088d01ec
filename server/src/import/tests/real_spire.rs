//! The real spire-server (tests/interop/bin/spire-server, built by tests/interop/build.sh)
//! writes the datastore and keys.json; the import must reproduce what its own CLI shows. When
//! the binary has not been built, the test says so and checks nothing else (the fixture tests
//! and interop scenarios 86/87 cover the same ground).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use signet_common::clock::SystemClock;
use signet_common::id::parse_id;

use super::{args_for, ca_config, now};
use crate::ca::Ca;
use crate::datastore::DataStore;
use crate::datastore::sled::SledStore;
use crate::import::import_spire;
use crate::keys::KeyManager;
use crate::keys::disk::DiskKeyManager;

fn spire_server() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/bin/spire-server");
    p.is_file().then_some(p)
}

struct Spire {
    bin: PathBuf,
    sock: PathBuf,
    child: Child,
}

impl Spire {
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("-socketPath")
            .arg(&self.sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spire-server {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test]
async fn a_real_spire_servers_datastore_and_keys_are_imported() {
    let Some(bin) = spire_server() else {
        eprintln!(
            "spire-server not built (tests/interop/build.sh): real-SPIRE import test not run"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = d.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{d}/api.sock"
    trust_domain = "example.org"
    data_dir = "{d}/data"
    log_level = "WARN"
}}
plugins {{
    DataStore "sql" {{ plugin_data {{ database_type = "sqlite3" connection_string = "{d}/data/datastore.sqlite3" }} }}
    KeyManager "disk" {{ plugin_data {{ keys_path = "{d}/keys.json" }} }}
    NodeAttestor "join_token" {{ plugin_data {{}} }}
}}
"#,
            d = d.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("spire.log")).unwrap();
    let child = Command::new(&bin)
        .args(["run", "-config"])
        .arg(&conf)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let spire = Spire {
        bin,
        sock: d.join("api.sock"),
        child,
    };
    let mut ready = false;
    for _ in 0..120 {
        let ok = Command::new(&spire.bin)
            .args(["bundle", "show", "-socketPath"])
            .arg(&spire.sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        ready,
        "spire-server did not start: {}",
        std::fs::read_to_string(d.join("spire.log")).unwrap_or_default()
    );

    spire.cli(&[
        "token",
        "generate",
        "-spiffeID",
        "spiffe://example.org/node",
        "-ttl",
        "600",
    ]);
    let other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut other = other;
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    other.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://other.org".try_into().unwrap(),
    )];
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other_pem = other.self_signed(&other_key).unwrap().pem();
    std::fs::write(d.join("other.pem"), other_pem).unwrap();
    let other_path = d.join("other.pem").display().to_string();
    spire.cli(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-path",
        &other_path,
    ]);
    spire.cli(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/node",
        "-spiffeID",
        "spiffe://example.org/web",
        "-selector",
        "unix:uid:1000",
        "-selector",
        "unix:gid:0",
        "-dns",
        "web.example.org",
        "-dns",
        "alt.example.org",
        "-x509SVIDTTL",
        "600",
        "-jwtSVIDTTL",
        "120",
        "-hint",
        "h",
        "-admin",
        "-downstream",
        "-entryExpiry",
        "4102444800",
        "-federatesWith",
        "spiffe://other.org",
    ]);
    let shown: serde_json::Value =
        serde_json::from_str(&spire.cli(&["entry", "show", "-output", "json"])).unwrap();
    let bundle_pem = spire.cli(&["bundle", "show"]);
    spire.stop();

    let report = import_spire(&args_for(&conf), now()).await.unwrap();
    let entries = shown["entries"].as_array().unwrap();
    assert_eq!(report.entries, entries.len());
    assert_eq!((report.join_tokens, report.federated_bundles.len()), (1, 1));
    let store = Arc::new(SledStore::open(&d.join("data").join("datastore")).unwrap());
    for e in entries {
        let id = e["id"].as_str().unwrap();
        let got = store.entry(id).await.unwrap().unwrap();
        let spiffe = format!(
            "spiffe://{}{}",
            e["spiffe_id"]["trust_domain"].as_str().unwrap(),
            e["spiffe_id"]["path"].as_str().unwrap()
        );
        assert_eq!(got.spiffe_id, parse_id(&spiffe).unwrap(), "{id}");
        assert_eq!(
            got.revision_number,
            e["revision_number"]
                .as_str()
                .unwrap_or("0")
                .parse::<i64>()
                .unwrap()
        );
        assert_eq!(
            got.created_at,
            e["created_at"].as_str().unwrap().parse::<i64>().unwrap()
        );
        assert_eq!(
            i64::from(got.x509_svid_ttl),
            e["x509_svid_ttl"].as_i64().unwrap_or(0)
        );
        assert_eq!(
            i64::from(got.jwt_svid_ttl),
            e["jwt_svid_ttl"].as_i64().unwrap_or(0)
        );
        let dns: Vec<&str> = e["dns_names"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(got.dns_names, dns);
        assert_eq!(got.admin, e["admin"].as_bool().unwrap_or(false));
        assert_eq!(got.hint, e["hint"].as_str().unwrap_or(""));
        assert_eq!(
            got.selectors.len(),
            e["selectors"].as_array().unwrap().len()
        );
    }

    let keys: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::open(&d.join("keys.json")).unwrap());
    let ca = Ca::new(ca_config(), Arc::new(SystemClock), keys, store.clone())
        .await
        .unwrap();
    let der = ca.active_x509_ca_der().unwrap();
    let spire_roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bundle_pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(spire_roots, vec![der], "Signet signs with SPIRE's CA");
}
