//! The agent against a real in-process server: join-token attestation and restart without a
//! token, ban, and a server outage.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signet_agent::run::Agent;
use signet_agent::svid::BANNED_LOG;
use signet_agent::svid::storage::DATA_FILE;
use signet_common::clock::{Clock, SystemClock};
use signet_tests::agent::{Proxy, Setup, http_get, parse, svid_id, until};

#[tokio::test]
async fn attests_with_a_join_token_then_restarts_without_one() {
    let setup = Setup::new(&[]).await;
    let token = setup.server.join_token(600).await;
    let agent = Agent::start(setup.config(Some(&token), ""), Arc::new(SystemClock))
        .await
        .unwrap();
    let id = agent.agent_id.clone();
    assert_eq!(
        id.to_string(),
        format!("spiffe://example.org/spire/agent/join_token/{token}")
    );
    agent.shutdown().await.unwrap();
    assert!(setup.data_dir().join(DATA_FILE).exists());
    let key = setup.data_dir().join("keys/agent-svid-A.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // The token is spent; the stored SVID is enough.
    let again = Agent::start(setup.config(None, ""), Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(again.agent_id, id, "the same agent ID after a restart");

    // And it works: mTLS with the loaded SVID syncs and mints.
    let entry = setup.create_entry(&id, "/after-restart").await;
    let mut rx = again.snapshot();
    let snap = until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    assert_eq!(
        svid_id(&snap, &entry).as_deref(),
        Some("spiffe://example.org/after-restart")
    );
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_stored_svid_or_a_token_the_agent_does_not_start() {
    let setup = Setup::new(&[]).await;
    let err = Agent::start(setup.config(None, ""), Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("join token"), "{err:#}");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_banned_agent_removes_its_svid_and_stops() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let setup = Setup::new(&[]).await;
    let mut agent = setup
        .agent("experimental {\n sync_interval = \"1s\"\n }")
        .await;
    let id = agent.agent_id.clone();
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| s.synced).await;

    setup.ban(&id).await;
    let reason = tokio::time::timeout(Duration::from_secs(10), agent.stopped())
        .await
        .expect("the agent stops on its own");
    assert!(reason.contains("banned"), "{reason}");
    agent.shutdown().await.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches(BANNED_LOG).count(), 1, "{text}");
    assert!(!setup.data_dir().join(DATA_FILE).exists(), "SVID removed");
    assert!(!setup.data_dir().join("keys/agent-svid-A.key").exists());

    // No SVID and no token: it cannot come back.
    let token = setup.server.join_token(600).await;
    let err = Agent::start(setup.config(None, ""), Arc::new(SystemClock)).await;
    assert!(err.is_err());
    drop(token);
}

#[tokio::test]
async fn an_outage_keeps_svids_and_renewal_resumes_when_the_server_returns() {
    // The workload SVID lives 20 s (renewed about 10 s after it arrives); the agent's own
    // SVID outlives the outage. The agent reaches the server through a proxy that cuts it off.
    let setup = Setup::new(&[]).await;
    let proxy = Proxy::start(setup.server.server().tcp_addr).await;
    let token = setup.server.join_token(600).await;
    let agent = Agent::start(
        setup.config_via(proxy.port, Some(&token), ""),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let entry = setup
        .create_entry_with_ttl(&agent.agent_id, "/steady", 20)
        .await;
    let mut rx = agent.snapshot();
    let first = until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let first = Arc::clone(&first.svids[&entry]);

    proxy.cut();
    // Past the SVID's half life, renewal fails; the SVID is still served.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(SystemClock.unix_now() < first.not_after);
    assert_eq!(
        rx.borrow().svids.get(&entry).map(|s| s.chain.clone()),
        Some(first.chain.clone()),
        "the current SVID is kept while the server is away"
    );

    proxy.restore();
    let restored = Instant::now();
    let renewed = until(&mut rx, Duration::from_secs(8), |s| {
        s.svids
            .get(&entry)
            .is_some_and(|v| v.not_after > first.not_after)
    })
    .await;
    println!(
        "renewal resumed {:?} after the server came back",
        restored.elapsed()
    );
    assert!(
        SystemClock.unix_now() < first.not_after,
        "renewed before expiry"
    );
    assert_eq!(renewed.svids.len(), 1);
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn insecure_bootstrap_attests_then_trusts_the_bundle_it_fetched() {
    let setup = Setup::new(&[]).await;
    let port = setup.server.server().tcp_addr.port();
    let text = setup
        .config_text(port, "")
        .replace("trust_bundle_path", "insecure_bootstrap = true\n    # was");
    let token = setup.server.join_token(600).await;
    let agent = Agent::start(parse(&text, Some(&token)), Arc::new(SystemClock))
        .await
        .unwrap();
    let roots = agent.identity.roots().borrow().to_vec();
    assert_eq!(
        roots,
        setup.server.roots().await,
        "the server's bundle is stored"
    );
    let id = agent.agent_id.clone();
    agent.shutdown().await.unwrap();

    // After the first contact the server is verified against the stored bundle.
    let again = Agent::start(parse(&text, None), Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(again.agent_id, id);
    let entry = setup.create_entry(&id, "/verified").await;
    let mut rx = again.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_outside_the_bootstrap_bundle_is_refused() {
    let setup = Setup::new(&[]).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = params.self_signed(&key).unwrap().pem();
    std::fs::write(setup.dir.path().join("bootstrap.pem"), other).unwrap();
    let token = setup.server.join_token(600).await;
    let err = Agent::start(setup.config(Some(&token), ""), Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("failed to attest"), "{err:#}");
    // The token was not spent on an unverified server.
    assert!(setup.server.attest(&token).await.is_ok());
}

#[tokio::test]
async fn health_is_ready_once_the_agent_has_synced() {
    let setup = Setup::new(&[]).await;
    let port = setup.server.server().tcp_addr.port();
    let text = format!(
        "{}\nhealth_checks {{\n listener_enabled = true\n bind_address = \"127.0.0.1\"\n bind_port = \"0\"\n}}\n",
        setup.config_text(port, "")
    );
    let token = setup.server.join_token(600).await;
    let agent = Agent::start(parse(&text, Some(&token)), Arc::new(SystemClock))
        .await
        .unwrap();
    let addr = agent.health_addr.expect("health listener enabled");
    let live = http_get(addr, "/live").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| s.synced).await;
    let ready = http_get(addr, "/ready").await;
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("\"ready\":true"),
        "{ready}"
    );
    agent.shutdown().await.unwrap();
}
