//! Prometheus metrics (`telemetry { Prometheus {} }`) on both binaries, read through a
//! text-format parser nobody here wrote (the `prometheus-parse` crate): the counters move on
//! issuance, on a CA rotation under a short `ca_ttl`, and as agents connect and leave; a
//! metrics port already in use is a clear start-up error.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use signet_agent::run::Agent;
use signet_common::clock::SystemClock;
use signet_tests::agent::{Setup, http_get, parse, until};
use signet_tests::{Options, TestServer};

fn telemetry(port: u16, prefix: Option<&str>) -> String {
    let prefix = prefix.map_or(String::new(), |p| format!("MetricPrefix = \"{p}\""));
    format!(
        r#"telemetry {{
    Prometheus {{
        host = "127.0.0.1"
        port = {port}
    }}
    {prefix}
}}"#
    )
}

/// Scrapes `/metrics` and parses it with `prometheus-parse`.
async fn scrape(addr: SocketAddr) -> Scrape {
    let resp = http_get(addr, "/metrics").await;
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("the exposition parses")
}

/// The value of the sample `name` whose labels include `labels` (counters, gauges, untyped).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a scalar: {other:?}"),
        })
}

/// How many observations a histogram sample with `labels` holds.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let count_name = format!("{name}_count");
    if let Some(v) = value(s, &count_name, labels) {
        return Some(v as u64);
    }
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match &x.value {
            Value::Histogram(buckets) => buckets.last().map(|b| b.count as u64),
            _ => None,
        })
}

async fn wait_for_value(
    addr: SocketAddr,
    within: Duration,
    name: &str,
    labels: &[(&str, &str)],
    ok: impl Fn(f64) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = scrape(addr).await;
        if value(&s, name, labels).is_some_and(&ok) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} never satisfied the condition; last: {:?}",
            value(&s, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn server_and_agent_metrics_parse_and_count_issuance_and_agent_connections() {
    let setup = Setup::with_options(Options {
        blocks: vec![telemetry(0, None)],
        ..Options::default()
    })
    .await;
    let server_addr = setup.server.server().metrics_addr.expect("metrics enabled");
    let before = scrape(server_addr).await;
    assert!(
        !before.docs.is_empty() && !before.samples.is_empty(),
        "families with HELP text"
    );
    assert_eq!(
        value(&before, "signet_server_agents_connected", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&before, "signet_server_x509_ca_prepared", &[]),
        Some(0.0)
    );
    let expires_in = value(&before, "signet_server_x509_ca_expires_in_seconds", &[]).unwrap();
    assert!(expires_in > 3600.0, "default ca_ttl: {expires_in}");
    assert!(value(&before, "signet_server_jwt_key_expires_in_seconds", &[]).unwrap() > 3600.0);
    let agent_svids = |s: &Scrape| {
        value(
            s,
            "signet_server_server_ca_sign_x509_svid_total",
            &[("kind", "agent"), ("result", "ok")],
        )
        .unwrap_or(0.0)
    };
    let issued_before = agent_svids(&before);

    // An agent attests (an agent SVID is issued) and opens the change push.
    let token = setup.server.join_token(600).await;
    let text = format!(
        "{}\n{}",
        setup.config_text(setup.server.server().tcp_addr.port(), ""),
        telemetry(0, Some("spire_agent"))
    );
    let agent = Agent::start(parse(&text, Some(&token)), Arc::new(SystemClock))
        .await
        .unwrap();
    let after = wait_for_value(
        server_addr,
        Duration::from_secs(10),
        "signet_server_agents_connected",
        &[],
        |v| v == 1.0,
    )
    .await;
    assert_eq!(agent_svids(&after), issued_before + 1.0);
    let attest = [
        ("service", "spire.api.server.agent.v1.Agent"),
        ("method", "AttestAgent"),
        ("status", "OK"),
    ];
    assert_eq!(
        value(&after, "signet_server_rpc_calls_total", &attest),
        Some(1.0)
    );
    assert_eq!(
        histogram_count(&after, "signet_server_rpc_elapsed_time_seconds", &attest),
        Some(1)
    );
    assert!(value(&after, "signet_server_push_events_sent_total", &[]).unwrap() >= 1.0);

    // A workload entry: the agent mints its SVID; the server counts a workload issuance
    // and pushes the change (a timed delivery).
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/w", &format!("uid:{uid}"))
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let server_now = wait_for_value(
        server_addr,
        Duration::from_secs(5),
        "signet_server_server_ca_sign_x509_svid_total",
        &[("kind", "workload"), ("result", "ok")],
        |v| v >= 1.0,
    )
    .await;
    assert!(
        histogram_count(
            &server_now,
            "signet_server_push_delivery_latency_seconds",
            &[]
        )
        .unwrap()
            >= 1
    );
    assert_eq!(
        value(
            &server_now,
            "signet_server_entry_entries_by_entryid_cache_count",
            &[]
        ),
        Some(1.0)
    );

    // The agent's own metrics, with SPIRE's prefix set through MetricPrefix.
    let agent_addr = agent.metrics_addr.expect("agent metrics enabled");
    let client =
        spiffe::WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
            .await
            .unwrap();
    let mut stream = client.stream_x509_svids().await.unwrap();
    let _ = tokio_stream::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    let a = wait_for_value(
        agent_addr,
        Duration::from_secs(5),
        "spire_agent_workload_api_connections",
        &[],
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(
        value(&a, "spire_agent_lru_cache_svid_map_size", &[]),
        Some(1.0)
    );
    assert_eq!(value(&a, "spire_agent_server_connected", &[]), Some(1.0));
    assert!(
        value(
            &a,
            "spire_agent_workload_svid_renewals_total",
            &[("result", "ok")]
        )
        .unwrap()
            >= 1.0
    );
    let soonest = value(&a, "spire_agent_svid_soonest_expiry_seconds", &[]).unwrap();
    assert!(soonest > 0.0 && soonest <= 3600.0, "{soonest}");
    assert!(
        histogram_count(
            &a,
            "spire_agent_manager_sync_fetch_entries_updates_elapsed_time_seconds",
            &[("result", "ok")]
        )
        .unwrap()
            >= 1
    );
    assert!(
        a.samples
            .iter()
            .all(|s| s.metric.starts_with("spire_agent_")),
        "every name carries the prefix"
    );
    drop(stream);
    drop(client);
    wait_for_value(
        agent_addr,
        Duration::from_secs(5),
        "spire_agent_workload_api_connections",
        &[],
        |v| v == 0.0,
    )
    .await;

    // The agent leaves: the server's gauge comes back down.
    agent.shutdown().await.unwrap();
    wait_for_value(
        server_addr,
        Duration::from_secs(10),
        "signet_server_agents_connected",
        &[],
        |v| v == 0.0,
    )
    .await;
}

#[tokio::test]
async fn a_ca_rotation_under_a_short_ca_ttl_counts_and_resets_the_expiry_gauge() {
    let server = TestServer::start(Options {
        server_lines: vec![
            "ca_ttl = \"20s\"".into(),
            "default_x509_svid_ttl = \"3s\"".into(),
            "default_jwt_svid_ttl = \"3s\"".into(),
        ],
        blocks: vec![telemetry(0, None)],
        ..Options::default()
    })
    .await;
    let addr = server.server().metrics_addr.unwrap();
    let first = scrape(addr).await;
    let rotations = |s: &Scrape| value(s, "signet_server_ca_manager_x509_ca_activate_total", &[]);
    assert_eq!(rotations(&first), Some(0.0));
    let first_expiry = value(
        &first,
        "signet_server_manager_x509_ca_rotate_expiration",
        &[],
    )
    .unwrap();
    assert!(value(&first, "signet_server_x509_ca_expires_in_seconds", &[]).unwrap() <= 20.0);

    // Prepared at half life: the gauge says a successor exists.
    wait_for_value(
        addr,
        Duration::from_secs(20),
        "signet_server_x509_ca_prepared",
        &[],
        |v| v == 1.0,
    )
    .await;
    let rotated = wait_for_value(
        addr,
        Duration::from_secs(20),
        "signet_server_ca_manager_x509_ca_activate_total",
        &[],
        |v| v >= 1.0,
    )
    .await;
    assert!(
        value(
            &rotated,
            "signet_server_ca_manager_x509_ca_prepare_total",
            &[]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &rotated,
            "signet_server_manager_x509_ca_rotate_expiration",
            &[]
        )
        .unwrap()
            > first_expiry
    );
    let left = value(&rotated, "signet_server_x509_ca_expires_in_seconds", &[]).unwrap();
    assert!(left > 10.0, "reset to the new CA's lifetime: {left}");
    assert!(
        value(
            &rotated,
            "signet_server_manager_jwt_key_activate_total",
            &[]
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn a_metrics_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        blocks: vec![telemetry(port, None)],
        ..Options::default()
    };
    let text = TestServer::config_text(dir.path(), &opts);
    let config = signet_server::config::Config::parse(
        &text,
        "server.conf",
        &signet_server::config::RunArgs::default(),
    )
    .unwrap();
    let err = signet_server::run::Server::start(config, Arc::new(SystemClock))
        .await
        .expect_err("the port is taken");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "cannot bind the Prometheus metrics listener on 127.0.0.1:{port}"
        )) && msg.contains("in use"),
        "{msg}"
    );

    // The agent says the same.
    let setup = Setup::new(&[]).await;
    let token = setup.server.join_token(600).await;
    let text = format!(
        "{}\n{}",
        setup.config_text(setup.server.server().tcp_addr.port(), ""),
        telemetry(port, None)
    );
    let err = Agent::start(parse(&text, Some(&token)), Arc::new(SystemClock))
        .await
        .expect_err("the port is taken");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "cannot bind the Prometheus metrics listener on 127.0.0.1:{port}"
        )),
        "{msg}"
    );
    drop(taken);
}

#[test]
fn a_bad_metric_prefix_or_a_missing_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (block, want) in [
        (
            "telemetry {\n Prometheus { port = 9 }\n MetricPrefix = \"9bad-name\"\n}",
            "telemetry.MetricPrefix",
        ),
        (
            "telemetry {\n Prometheus { host = \"127.0.0.1\" }\n}",
            "telemetry.Prometheus.port is required",
        ),
    ] {
        let opts = Options {
            blocks: vec![block.into()],
            ..Options::default()
        };
        let text = TestServer::config_text(dir.path(), &opts);
        let err = signet_server::config::Config::parse(
            &text,
            "server.conf",
            &signet_server::config::RunArgs::default(),
        )
        .expect_err(block);
        assert!(err.to_string().contains(want), "{err}");
    }
}
