//! Two `signet-server` processes on one real PostgreSQL, under a loop creating entries
//! through both, while PostgreSQL is stopped (`pg_ctl stop -m fast`, down a few seconds, then
//! started) and later restarted (`pg_ctl restart -m fast`): every admin and agent call that
//! needs the database answers `Unavailable` naming it, before the call's deadline; no server
//! exits; the agents keep serving their workloads valid SVIDs from their caches; once
//! PostgreSQL is back both servers take creates again without a restart, the change push
//! across servers works again (LISTEN reconnected), and every acknowledged create is there.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_agent::run::Agent;
use signet_common::clock::{Clock, SystemClock};
use signet_proto::spire::api::server::agent::v1 as agent_pb;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, CountEntriesRequest, GetAuthorizedEntriesRequest, GetEntryRequest,
    ListEntriesRequest,
};
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{BatchNewX509svidRequest, NewX509svidParams};
use signet_proto::types;
use signet_server::datastore::postgres::testing::PgCluster;
use signet_tests::agent::parse;
use signet_tests::agent_proc::{bundle_roots, join_token};
use signet_tests::ha::{
    CreateLoad, Updates, agent_text, entry, expired_for, listed_entry_ids, seen, two_servers,
    watch_x509,
};
use signet_tests::procs::ServerProc;
use signet_tests::{Identity, key_and_csr, tls_channel, uds_channel};
use spiffe::WorkloadApiClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The deadline every call in this test carries (`grpc-timeout`).
const DEADLINE: Duration = Duration::from_secs(5);
/// How long PostgreSQL stays down after `pg_ctl stop`.
const DOWN_FOR: Duration = Duration::from_secs(4);
/// The workloads' X509-SVID TTL, seconds.
const WORKLOAD_TTL: i32 = 20;
/// The bound on recovering by themselves once PostgreSQL is back (a liveness bound).
const RECOVERY: Duration = Duration::from_secs(30);

fn with_deadline<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

/// Runs `call` and checks it answered before its deadline; a call that hangs past it
/// (plus a second of slack for the test itself) fails the test.
async fn timed<T>(what: &str, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    let started = Instant::now();
    let result = tokio::time::timeout(DEADLINE + Duration::from_secs(1), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer, hung past its {DEADLINE:?} deadline"));
    let took = started.elapsed();
    assert!(
        took < DEADLINE,
        "{what}: answered after {took:?}, past its {DEADLINE:?} deadline: {result:?}",
        result = result.as_ref().err()
    );
    result
}

fn assert_unavailable(what: &str, code: Code, message: &str, database: &str) {
    assert_eq!(code, Code::Unavailable, "{what}: {message}");
    assert!(
        message.contains(database) && message.contains("unavailable"),
        "{what}: the message does not name the database {database:?}: {message}"
    );
}

/// Creates one entry through `socket`: the new entry's ID, or the item's (or call's)
/// status code and message.
async fn create(socket: &Path, e: types::Entry) -> Result<String, (Code, String)> {
    let result = timed("BatchCreateEntry", async {
        EntryClient::new(uds_channel(socket).await)
            .batch_create_entry(with_deadline(BatchCreateEntryRequest {
                entries: vec![e],
                output_mask: None,
            }))
            .await
    })
    .await;
    let resp = result.map_err(|s| (s.code(), s.message().to_owned()))?;
    let r = resp.into_inner().results.into_iter().next().unwrap();
    let status = r.status.unwrap();
    if status.code == 0 {
        Ok(r.entry.unwrap().id)
    } else {
        Err((Code::from_i32(status.code), status.message))
    }
}

/// Creates `e` through `socket`, retrying while the server answers `Unavailable`.
async fn create_when_back(socket: &Path, e: types::Entry) -> String {
    let started = Instant::now();
    loop {
        match create(socket, e.clone()).await {
            Ok(id) => return id,
            Err((Code::Unavailable, _)) if started.elapsed() < RECOVERY => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!(
                "no create through {} after recovery: {other:?}",
                socket.display()
            ),
        }
    }
}

/// Waits (at most `RECOVERY`) for the workload to be given an SVID whose ID ends with `path`.
async fn until_seen(updates: &Updates, path: &str, what: &str) {
    let started = Instant::now();
    loop {
        if seen(updates, path) {
            println!("{what}: reached the workload in {:?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < RECOVERY,
            "{what}: never reached the workload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The agent's Workload API answers from its cache with an SVID that has not expired.
async fn serves_valid_svid(socket: &Path, what: &str) {
    let fetch = async {
        WorkloadApiClient::connect_to(&format!("unix:{}", socket.display()))
            .await
            .unwrap()
            .fetch_x509_svid()
            .await
            .unwrap()
    };
    let svid = tokio::time::timeout(DEADLINE, fetch)
        .await
        .unwrap_or_else(|_| panic!("{what}: the agent did not answer FetchX509SVID"));
    let info = signet_common::x509::cert_info(svid.leaf().as_bytes()).unwrap();
    assert!(
        info.not_after > SystemClock.unix_now(),
        "{what}: the workload was given an expired SVID"
    );
}

/// One agent for `server` alone, attested with a join token from it.
async fn agent_for(server: &ServerProc, dir: &Path, name: &str) -> Agent {
    let text = agent_text(dir, name, server.port, &[]);
    let token = join_token(&server.socket()).await;
    Agent::start(parse(&text, Some(&token)), Arc::new(SystemClock))
        .await
        .unwrap()
}

/// What the probes need of one server: its admin socket, a TLS channel without and one with
/// an agent SVID, an unused join token and an existing entry.
struct Probe {
    name: &'static str,
    socket: std::path::PathBuf,
    anonymous: Channel,
    agent: Channel,
    token: String,
    entry_id: String,
}

impl Probe {
    async fn new(
        name: &'static str,
        server: &ServerProc,
        roots: &[Vec<u8>],
        entry_id: String,
    ) -> Self {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
        let anonymous = tls_channel(addr, roots, None).await.unwrap();
        let identity: Identity =
            signet_tests::attest(anonymous.clone(), &join_token(&server.socket()).await)
                .await
                .unwrap();
        let agent = tls_channel(addr, roots, Some(&identity)).await.unwrap();
        Self {
            name,
            socket: server.socket(),
            anonymous,
            agent,
            token: join_token(&server.socket()).await,
            entry_id,
        }
    }

    /// Every call that needs the database, while it is down: `Unavailable` naming it,
    /// before the deadline. Returns how many calls were made.
    async fn all_unavailable(&self, database: &str) -> usize {
        // BatchCreateEntry answers per entry: the item's status.
        match create(
            &self.socket,
            entry("/probe", "/spire/agent/elsewhere", "uid:2", 0),
        )
        .await
        {
            Ok(id) => panic!(
                "BatchCreateEntry on {}: created {id} while the database is down",
                self.name
            ),
            Err((code, message)) => {
                assert_unavailable(
                    &format!("BatchCreateEntry on {}", self.name),
                    code,
                    &message,
                    database,
                );
            }
        }
        let mut calls = 1;
        let mut check = |what: &str, result: Result<(), Status>| {
            calls += 1;
            let what = format!("{} on {}", what, self.name);
            match result {
                Ok(()) => panic!("{what}: answered OK while the database is down"),
                Err(s) => assert_unavailable(&what, s.code(), s.message(), database),
            }
        };
        let admin = uds_channel(&self.socket).await;

        let mut entries = EntryClient::new(admin.clone());
        let r = timed(
            "ListEntries",
            entries.list_entries(with_deadline(ListEntriesRequest::default())),
        )
        .await;
        check("ListEntries", r.map(drop));
        let r = timed(
            "CountEntries",
            entries.count_entries(with_deadline(CountEntriesRequest::default())),
        )
        .await;
        check("CountEntries", r.map(drop));
        let r = timed(
            "GetEntry",
            entries.get_entry(with_deadline(GetEntryRequest {
                id: self.entry_id.clone(),
                output_mask: None,
            })),
        )
        .await;
        check("GetEntry", r.map(drop));
        let mut agents = AgentClient::new(admin.clone());
        let r = timed(
            "CreateJoinToken",
            agents.create_join_token(with_deadline(agent_pb::CreateJoinTokenRequest {
                ttl: 60,
                ..Default::default()
            })),
        )
        .await;
        check("CreateJoinToken", r.map(drop));
        let r = timed(
            "ListAgents",
            agents.list_agents(with_deadline(agent_pb::ListAgentsRequest::default())),
        )
        .await;
        check("ListAgents", r.map(drop));
        let r = timed(
            "GetBundle",
            BundleClient::new(admin).get_bundle(with_deadline(GetBundleRequest::default())),
        )
        .await;
        check("GetBundle", r.map(drop));

        // The agent API over mTLS.
        let r = timed("AttestAgent", attest(self.anonymous.clone(), &self.token)).await;
        check("AttestAgent", r);
        let (_, csr) = key_and_csr(None);
        let r = timed(
            "RenewAgent",
            AgentClient::new(self.agent.clone()).renew_agent(with_deadline(
                agent_pb::RenewAgentRequest {
                    params: Some(agent_pb::AgentX509svidParams { csr: csr.clone() }),
                },
            )),
        )
        .await;
        check("RenewAgent", r.map(drop));
        let r = timed(
            "BatchNewX509SVID",
            SvidClient::new(self.agent.clone()).batch_new_x509svid(with_deadline(
                BatchNewX509svidRequest {
                    params: vec![NewX509svidParams {
                        entry_id: self.entry_id.clone(),
                        csr,
                    }],
                },
            )),
        )
        .await;
        check("BatchNewX509SVID", r.map(drop));
        let r = timed(
            "GetAuthorizedEntries",
            EntryClient::new(self.agent.clone())
                .get_authorized_entries(with_deadline(GetAuthorizedEntriesRequest::default())),
        )
        .await;
        check("GetAuthorizedEntries", r.map(drop));
        calls
    }
}

/// AttestAgent with a join token, carrying the deadline.
async fn attest(channel: Channel, token: &str) -> Result<(), Status> {
    let (_, csr) = key_and_csr(None);
    let req = agent_pb::AttestAgentRequest {
        step: Some(agent_pb::attest_agent_request::Step::Params(
            agent_pb::attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: token.as_bytes().to_vec(),
                }),
                params: Some(agent_pb::AgentX509svidParams { csr }),
            },
        )),
    };
    let mut stream = AgentClient::new(channel)
        .attest_agent(with_deadline(tokio_stream::iter([req])))
        .await?
        .into_inner();
    stream.message().await?;
    Ok(())
}

fn alive(server: &mut ServerProc, name: &str) {
    let status = server.child.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_none(), "server {name} exited: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_restarting_postgresql_is_unavailable_then_both_servers_recover() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let db_name = db.rsplit("dbname=").next().unwrap();
    let database = format!(
        "PostgreSQL at {}:{}/{db_name}",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = two_servers(&db, dir.path()).await;

    let roots = bundle_roots(&b.socket()).await;
    assert_eq!(roots.len(), 2, "both servers' roots");
    std::fs::write(
        dir.path().join("bootstrap.pem"),
        signet_common::pem::certificates(&roots),
    )
    .unwrap();

    // One agent on each server, each with a workload watching its SVID (20 s: renewed with
    // 10 s left, more than an outage lasts).
    let agent_a = agent_for(&a, dir.path(), "agent-a").await;
    let agent_b = agent_for(&b, dir.path(), "agent-b").await;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let me = format!("uid:{uid}");
    let under = |agent: &Agent| agent.agent_id.path().to_owned();
    let wl_a = create(
        &a.socket(),
        entry("/wl/a", &under(&agent_a), &me, WORKLOAD_TTL),
    )
    .await
    .unwrap();
    create(
        &b.socket(),
        entry("/wl/b", &under(&agent_b), &me, WORKLOAD_TTL),
    )
    .await
    .unwrap();
    let (updates_a, updates_b) = (
        watch_x509(&agent_a.socket_path),
        watch_x509(&agent_b.socket_path),
    );
    until_seen(&updates_a, "/wl/a", "the first SVID under A").await;
    until_seen(&updates_b, "/wl/b", "the first SVID under B").await;
    let watch_from = SystemClock.now();
    let probes = [
        Probe::new("A", &a, &roots, wl_a.clone()).await,
        Probe::new("B", &b, &roots, wl_a).await,
    ];

    // Entries created through both servers, as fast as they answer.
    let load = CreateLoad::start(
        vec![("a", a.socket()), ("b", b.socket())],
        |socket, e| async move { create(&socket, e).await },
    );

    for round in ["stop, down, start", "restart"] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if round == "restart" {
            let started = Instant::now();
            cluster.restart();
            println!("pg_ctl restart -m fast took {:?}", started.elapsed());
        } else {
            cluster.stop();
            let down = Instant::now();
            let mut calls = 0;
            for probe in &probes {
                calls += probe.all_unavailable(&database).await;
            }
            println!("PostgreSQL down: {calls} calls answered Unavailable naming it");
            serves_valid_svid(&agent_a.socket_path, "agent on A, database down").await;
            serves_valid_svid(&agent_b.socket_path, "agent on B, database down").await;
            alive(&mut a, "A");
            alive(&mut b, "B");
            tokio::time::sleep(DOWN_FOR.saturating_sub(down.elapsed())).await;
            cluster.start_again();
        }

        // Both take creates again, without a restart; and the push across servers works
        // again both ways.
        let tag = round.replace([',', ' '], "-");
        create_when_back(
            &a.socket(),
            entry(
                &format!("/back/{tag}/a"),
                "/spire/agent/elsewhere",
                "uid:3",
                0,
            ),
        )
        .await;
        create_when_back(
            &b.socket(),
            entry(
                &format!("/back/{tag}/b"),
                "/spire/agent/elsewhere",
                "uid:3",
                0,
            ),
        )
        .await;
        create_when_back(
            &a.socket(),
            entry(&format!("/{tag}/on-a"), &under(&agent_b), &me, 30),
        )
        .await;
        until_seen(
            &updates_b,
            &format!("/{tag}/on-a"),
            &format!("after {round}: created on A, watched under B"),
        )
        .await;
        create_when_back(
            &b.socket(),
            entry(&format!("/{tag}/on-b"), &under(&agent_a), &me, 30),
        )
        .await;
        until_seen(
            &updates_a,
            &format!("/{tag}/on-b"),
            &format!("after {round}: created on B, watched under A"),
        )
        .await;
        alive(&mut a, "A");
        alive(&mut b, "B");
    }

    let (acked, failures) = load.stop().await;
    if let Some((_, message)) = failures.first() {
        println!("a create refused under load: {message}");
    }
    for (code, message) in &failures {
        assert_unavailable("a create under load", *code, message, &database);
    }
    assert!(!failures.is_empty(), "the outages were seen by the writers");

    // Every acknowledged create is in the database, read through either server.
    for socket in [a.socket(), b.socket()] {
        let listed = listed_entry_ids(&socket).await;
        let missing: Vec<_> = acked.difference(&listed).collect();
        println!(
            "{} acknowledged entries, {} missing",
            acked.len(),
            missing.len()
        );
        assert!(missing.is_empty(), "acknowledged entries lost: {missing:?}");
    }

    // The workloads never held an expired SVID, and their agents renewed them after the
    // outages; each server's LISTEN came back after each outage.
    for (updates, path) in [(&updates_a, "/wl/a"), (&updates_b, "/wl/b")] {
        let started = Instant::now();
        while expired_for(updates, path, watch_from).0 < 2 {
            assert!(started.elapsed() < RECOVERY, "{path} was never renewed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (svids, expired) = expired_for(updates, path, watch_from);
        println!(
            "{path}: {svids} SVIDs seen, expired for {} ms",
            expired.as_millis()
        );
        assert_eq!(
            expired,
            Duration::ZERO,
            "{path}: the workload held an expired SVID"
        );
    }
    for server in [&a, &b] {
        let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap();
        let resumed = log.matches("LISTEN for changes resumed").count();
        assert!(
            resumed >= 2,
            "LISTEN resumed {resumed} times in {}",
            server.dir.display()
        );
    }
    alive(&mut a, "A");
    alive(&mut b, "B");
    agent_a.shutdown().await.unwrap();
    agent_b.shutdown().await.unwrap();
    a.kill9().await;
    b.kill9().await;
}
