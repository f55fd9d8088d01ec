//! Entry service tests: CRUD over a real gRPC Unix socket (caller = local), the sync
//! protocol as pure functions and over an in-process stream.

use std::sync::Arc;

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, BatchDeleteEntryRequest, BatchUpdateEntryRequest, CountEntriesRequest,
    GetAuthorizedEntriesRequest, GetEntryRequest, ListEntriesRequest, SyncAuthorizedEntriesRequest,
    batch_create_entry_response, list_entries_request,
};
use signet_proto::types::{self, federates_with_match, selector_match};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::authorized_entries::{check_initial, initial_pages, requested_pages, serve};
use crate::api::tests::{Harness, td};

fn sid(path: &str) -> Option<types::Spiffeid> {
    Some(types::Spiffeid {
        trust_domain: "example.org".into(),
        path: path.into(),
    })
}

fn sel(s: &str) -> types::Selector {
    let (t, v) = s.split_once(':').unwrap();
    types::Selector {
        r#type: t.into(),
        value: v.into(),
    }
}

fn entry(spiffe: &str, parent: &str, sels: &[&str]) -> types::Entry {
    types::Entry {
        spiffe_id: sid(spiffe),
        parent_id: sid(parent),
        selectors: sels.iter().map(|s| sel(s)).collect(),
        ..Default::default()
    }
}

const AGENT: &str = "/spire/agent/join_token/t1";

async fn create(
    h: &mut Harness,
    entries: Vec<types::Entry>,
) -> Vec<batch_create_entry_response::Result> {
    h.entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries,
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results
}

async fn create_ok(h: &mut Harness, e: types::Entry) -> types::Entry {
    let mut r = create(h, vec![e]).await;
    let r = r.remove(0);
    assert_eq!(r.status.as_ref().unwrap().code, 0, "{:?}", r.status);
    r.entry.unwrap()
}

async fn list(h: &mut Harness, filter: list_entries_request::Filter) -> Vec<types::Entry> {
    h.entries
        .list_entries(ListEntriesRequest {
            filter: Some(filter),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

async fn stored_count(h: &Harness) -> usize {
    h.store.list_entries().await.unwrap().len()
}

#[tokio::test]
async fn creates_an_entry_with_a_uuid_and_reads_it_back() {
    let mut h = Harness::start().await;
    let mut e = entry("/web", AGENT, &["unix:uid:1000"]);
    e.dns_names = vec!["web.example.org".into()];
    e.x509_svid_ttl = 600;
    let created = create_ok(&mut h, e).await;
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    assert_eq!(created.created_at, h.state.clock.unix_now());
    assert_eq!(created.revision_number, 0);
    assert_eq!(created.x509_svid_ttl, 600);

    let got = h
        .entries
        .get_entry(GetEntryRequest {
            id: created.id.clone(),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let masked = h
        .entries
        .get_entry(GetEntryRequest {
            id: created.id.clone(),
            output_mask: Some(types::EntryMask {
                spiffe_id: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(masked.spiffe_id, sid("/web"));
    assert!(masked.parent_id.is_none() && masked.selectors.is_empty());
    assert_eq!(masked.id, created.id);
}

#[tokio::test]
async fn get_entry_refuses_a_missing_or_empty_id() {
    let mut h = Harness::start().await;
    let err = h
        .entries
        .get_entry(GetEntryRequest {
            id: "nope".into(),
            output_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "entry not found")
    );
    let err = h
        .entries
        .get_entry(GetEntryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn refuses_invalid_entries_and_stores_nothing() {
    let mut h = Harness::start().await;
    let foreign = types::Entry {
        spiffe_id: Some(types::Spiffeid {
            trust_domain: "other.org".into(),
            path: "/w".into(),
        }),
        ..entry("/x", AGENT, &["unix:uid:1"])
    };
    let bad = vec![
        entry("/a//b", AGENT, &["unix:uid:1"]),
        entry("/a/../b", AGENT, &["unix:uid:1"]),
        entry("", AGENT, &["unix:uid:1"]),
        entry("/spire/agent/x", AGENT, &["unix:uid:1"]),
        entry("/w", "", &["unix:uid:1"]),
        entry("/w", AGENT, &[]),
        foreign,
    ];
    let n = bad.len();
    let results = create(&mut h, bad).await;
    assert_eq!(results.len(), n);
    for r in results {
        let status = r.status.unwrap();
        assert_eq!(status.code, Code::InvalidArgument as i32, "{status:?}");
        assert!(
            status.message.starts_with("failed to convert entry: "),
            "{}",
            status.message
        );
        assert!(r.entry.is_none());
    }
    assert_eq!(stored_count(&h).await, 0);
}

#[tokio::test]
async fn a_similar_entry_is_refused_and_the_existing_one_returned() {
    let mut h = Harness::start().await;
    let first = create_ok(&mut h, entry("/web", AGENT, &["unix:uid:1", "unix:gid:2"])).await;
    let mut again = entry("/web", AGENT, &["unix:gid:2", "unix:uid:1"]);
    again.id = "custom-id".into();
    again.x509_svid_ttl = 99;
    let r = create(&mut h, vec![again]).await.remove(0);
    let status = r.status.unwrap();
    assert_eq!(status.code, Code::AlreadyExists as i32);
    assert_eq!(status.message, "similar entry already exists");
    assert_eq!(r.entry.unwrap(), first);
    assert_eq!(stored_count(&h).await, 1);
}

#[tokio::test]
async fn a_taken_id_is_refused() {
    let mut h = Harness::start().await;
    let mut a = entry("/a", AGENT, &["unix:uid:1"]);
    a.id = "fixed".into();
    create_ok(&mut h, a).await;
    let mut b = entry("/b", AGENT, &["unix:uid:2"]);
    b.id = "fixed".into();
    let r = create(&mut h, vec![b]).await.remove(0);
    assert_eq!(r.status.unwrap().code, Code::AlreadyExists as i32);
    assert_eq!(stored_count(&h).await, 1);
    assert_eq!(
        h.store
            .entry("fixed")
            .await
            .unwrap()
            .unwrap()
            .spiffe_id
            .path(),
        "/a"
    );
}

#[tokio::test]
async fn federates_with_requires_an_existing_bundle() {
    let mut h = Harness::start().await;
    let mut e = entry("/web", AGENT, &["unix:uid:1"]);
    e.federates_with = vec!["fed.org".into()];
    let r = create(&mut h, vec![e.clone()]).await.remove(0);
    let status = r.status.unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert_eq!(
        status.message,
        r#"failed to create entry: unable to find federated bundle "spiffe://fed.org""#
    );
    assert_eq!(stored_count(&h).await, 0);

    let fed = id::parse_trust_domain("fed.org").unwrap();
    h.store.set_bundle(Bundle::new(fed)).await.unwrap();
    let created = create_ok(&mut h, e).await;
    assert_eq!(created.federates_with, vec!["fed.org".to_owned()]);
}

/// Five entries with varied fields for the filter tests.
async fn seed(h: &mut Harness) -> Vec<types::Entry> {
    for name in ["a.org", "b.org", "c.org"] {
        let td = id::parse_trust_domain(name).unwrap();
        h.store.set_bundle(Bundle::new(td)).await.unwrap();
    }
    let mut e1 = entry("/one", AGENT, &["unix:uid:1"]);
    e1.id = "e1".into();
    e1.federates_with = vec!["a.org".into()];
    e1.hint = "blue".into();
    let mut e2 = entry("/two", AGENT, &["unix:uid:1", "unix:gid:1"]);
    e2.id = "e2".into();
    e2.federates_with = vec!["a.org".into(), "b.org".into()];
    let mut e3 = entry("/three", "/node", &["unix:gid:1"]);
    e3.id = "e3".into();
    e3.downstream = true;
    let mut e4 = entry("/one", "/node", &["k8s:ns:x"]);
    e4.id = "e4".into();
    e4.federates_with = vec!["c.org".into()];
    e4.hint = "blue".into();
    let mut e5 = entry("/five", AGENT, &["unix:uid:1", "unix:gid:1", "unix:user:x"]);
    e5.id = "e5".into();
    let mut out = vec![];
    for e in [e1, e2, e3, e4, e5] {
        out.push(create_ok(h, e).await);
    }
    out
}

fn ids(entries: &[types::Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

fn by_selectors(m: selector_match::MatchBehavior, sels: &[&str]) -> list_entries_request::Filter {
    list_entries_request::Filter {
        by_selectors: Some(types::SelectorMatch {
            selectors: sels.iter().map(|s| sel(s)).collect(),
            r#match: m as i32,
        }),
        ..Default::default()
    }
}

fn by_federates(
    m: federates_with_match::MatchBehavior,
    tds: &[&str],
) -> list_entries_request::Filter {
    list_entries_request::Filter {
        by_federates_with: Some(types::FederatesWithMatch {
            trust_domains: tds.iter().map(|s| (*s).to_owned()).collect(),
            r#match: m as i32,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn list_filters_follow_spire() {
    use federates_with_match::MatchBehavior as F;
    use selector_match::MatchBehavior as S;
    let mut h = Harness::start().await;
    seed(&mut h).await;
    let uid_gid = ["unix:uid:1", "unix:gid:1"];
    let cases: Vec<(list_entries_request::Filter, Vec<&str>)> = vec![
        (Default::default(), vec!["e1", "e2", "e3", "e4", "e5"]),
        (
            list_entries_request::Filter {
                by_spiffe_id: sid("/one"),
                ..Default::default()
            },
            vec!["e1", "e4"],
        ),
        (
            list_entries_request::Filter {
                by_parent_id: sid("/node"),
                ..Default::default()
            },
            vec!["e3", "e4"],
        ),
        (by_selectors(S::MatchExact, &uid_gid), vec!["e2"]),
        (
            by_selectors(S::MatchSubset, &uid_gid),
            vec!["e1", "e2", "e3"],
        ),
        (by_selectors(S::MatchSuperset, &uid_gid), vec!["e2", "e5"]),
        (
            by_selectors(S::MatchAny, &["unix:gid:1", "k8s:ns:x"]),
            vec!["e2", "e3", "e4", "e5"],
        ),
        (by_federates(F::MatchExact, &["a.org"]), vec!["e1"]),
        (
            by_federates(F::MatchSubset, &["a.org", "b.org"]),
            vec!["e1", "e2"],
        ),
        (by_federates(F::MatchSuperset, &["a.org"]), vec!["e1", "e2"]),
        (
            by_federates(F::MatchAny, &["b.org", "c.org"]),
            vec!["e2", "e4"],
        ),
        (
            list_entries_request::Filter {
                by_hint: Some("blue".into()),
                ..Default::default()
            },
            vec!["e1", "e4"],
        ),
        (
            list_entries_request::Filter {
                by_downstream: Some(true),
                ..Default::default()
            },
            vec!["e3"],
        ),
        (
            list_entries_request::Filter {
                by_spiffe_id: sid("/one"),
                by_hint: Some("blue".into()),
                by_parent_id: sid(AGENT),
                ..Default::default()
            },
            vec!["e1"],
        ),
        (
            list_entries_request::Filter {
                by_parent_id: sid(AGENT),
                ..by_selectors(S::MatchSuperset, &["unix:gid:1"])
            },
            vec!["e2", "e5"],
        ),
    ];
    for (filter, want) in cases {
        let got = list(&mut h, filter.clone()).await;
        assert_eq!(ids(&got), want, "{filter:?}");
        let count = h
            .entries
            .count_entries(CountEntriesRequest {
                filter: Some(
                    signet_proto::spire::api::server::entry::v1::count_entries_request::Filter {
                        by_spiffe_id: filter.by_spiffe_id,
                        by_parent_id: filter.by_parent_id,
                        by_selectors: filter.by_selectors,
                        by_federates_with: filter.by_federates_with,
                        by_hint: filter.by_hint,
                        by_downstream: filter.by_downstream,
                    },
                ),
            })
            .await
            .unwrap()
            .into_inner()
            .count;
        assert_eq!(count as usize, want.len());
    }
}

#[tokio::test]
async fn malformed_filters_are_invalid_arguments() {
    let mut h = Harness::start().await;
    let bad = vec![
        list_entries_request::Filter {
            by_spiffe_id: sid("/spire/agent/x"),
            ..Default::default()
        },
        list_entries_request::Filter {
            by_parent_id: Some(types::Spiffeid {
                trust_domain: "other.org".into(),
                path: "/x".into(),
            }),
            ..Default::default()
        },
        by_selectors(selector_match::MatchBehavior::MatchAny, &[]),
        by_federates(federates_with_match::MatchBehavior::MatchAny, &[]),
        by_federates(
            federates_with_match::MatchBehavior::MatchAny,
            &["Bad Domain"],
        ),
    ];
    for filter in bad {
        let err = h
            .entries
            .list_entries(ListEntriesRequest {
                filter: Some(filter.clone()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{filter:?}");
        assert!(err.message().starts_with("malformed "), "{}", err.message());
    }
}

#[tokio::test]
async fn lists_in_pages() {
    let mut h = Harness::start().await;
    seed(&mut h).await;
    let mut token = String::new();
    let mut pages = vec![];
    loop {
        let resp = h
            .entries
            .list_entries(ListEntriesRequest {
                page_size: 2,
                page_token: token.clone(),
                output_mask: Some(types::EntryMask::default()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(ids(&resp.entries).join(","));
        assert!(resp.entries.iter().all(|e| e.spiffe_id.is_none()));
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    assert_eq!(pages, ["e1,e2", "e3,e4", "e5"]);

    let err = h
        .entries
        .list_entries(ListEntriesRequest {
            page_size: 2,
            page_token: "not/a/token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn filtered_listings_page_to_the_same_entries_and_count_the_store() {
    use federates_with_match::MatchBehavior as F;
    use selector_match::MatchBehavior as S;
    let mut h = Harness::start().await;
    seed(&mut h).await;
    let filters = [
        list_entries_request::Filter::default(),
        list_entries_request::Filter {
            by_parent_id: sid(AGENT),
            ..Default::default()
        },
        list_entries_request::Filter {
            by_spiffe_id: sid("/one"),
            ..Default::default()
        },
        list_entries_request::Filter {
            by_hint: Some("blue".into()),
            ..Default::default()
        },
        list_entries_request::Filter {
            by_downstream: Some(true),
            ..Default::default()
        },
        by_selectors(S::MatchExact, &["unix:uid:1", "unix:gid:1"]),
        by_selectors(S::MatchSuperset, &["unix:uid:1"]),
        by_selectors(S::MatchSubset, &["unix:uid:1", "unix:gid:1"]),
        by_selectors(S::MatchAny, &["unix:gid:1", "k8s:ns:x"]),
        by_federates(F::MatchAny, &["a.org"]),
    ];
    for filter in filters {
        let all = ids(&list(&mut h, filter.clone()).await)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        for size in [1, 2, 3, 10] {
            let mut token = String::new();
            let mut paged = vec![];
            loop {
                let resp = h
                    .entries
                    .list_entries(ListEntriesRequest {
                        filter: Some(filter.clone()),
                        page_size: size,
                        page_token: token.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(resp.entries.len() <= usize::try_from(size).unwrap());
                paged.extend(resp.entries.iter().map(|e| e.id.clone()));
                if resp.next_page_token.is_empty() {
                    break;
                }
                assert!(!resp.entries.is_empty(), "a token follows a non-empty page");
                token = resp.next_page_token;
            }
            assert_eq!(paged, all, "{filter:?} in pages of {size}");
        }
    }
    let count = h
        .entries
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(usize::try_from(count).unwrap(), stored_count(&h).await);
}

#[tokio::test]
async fn updates_masked_fields_and_bumps_the_revision() {
    let mut h = Harness::start().await;
    let mut e = entry("/web", AGENT, &["unix:uid:1"]);
    e.hint = "keep".into();
    e.x509_svid_ttl = 60;
    let created = create_ok(&mut h, e).await;

    let resp = h
        .entries
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![
                types::Entry {
                    id: created.id.clone(),
                    x509_svid_ttl: 120,
                    selectors: vec![sel("unix:uid:2")],
                    ..Default::default()
                },
                types::Entry {
                    id: "missing".into(),
                    ..Default::default()
                },
            ],
            input_mask: Some(types::EntryMask {
                x509_svid_ttl: true,
                selectors: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let updated = resp.results[0].entry.clone().unwrap();
    assert_eq!(resp.results[0].status.as_ref().unwrap().code, 0);
    assert_eq!(updated.x509_svid_ttl, 120);
    assert_eq!(updated.selectors, vec![sel("unix:uid:2")]);
    assert_eq!(updated.hint, "keep");
    assert_eq!(updated.spiffe_id, created.spiffe_id);
    assert_eq!(updated.revision_number, 1);
    assert_eq!(updated.created_at, created.created_at);
    let missing = resp.results[1].status.as_ref().unwrap();
    assert_eq!(missing.code, Code::NotFound as i32);

    // A masked-in invalid value is refused and nothing changes.
    let resp = h
        .entries
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![types::Entry {
                id: created.id.clone(),
                spiffe_id: sid("/spire/x"),
                ..Default::default()
            }],
            input_mask: Some(types::EntryMask {
                spiffe_id: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let status = resp.results[0].status.as_ref().unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32);
    let stored = h.store.entry(&created.id).await.unwrap().unwrap();
    assert_eq!(stored.revision_number, 1);
    assert_eq!(stored.spiffe_id.path(), "/web");
}

#[tokio::test]
async fn update_without_a_mask_replaces_every_field() {
    let mut h = Harness::start().await;
    let mut e = entry("/web", AGENT, &["unix:uid:1"]);
    e.hint = "old".into();
    let created = create_ok(&mut h, e).await;
    let mut next = entry("/web2", AGENT, &["unix:uid:3"]);
    next.id = created.id.clone();
    let resp = h
        .entries
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![next],
            input_mask: None,
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let updated = resp.results[0].entry.clone().unwrap();
    assert_eq!(updated.spiffe_id, sid("/web2"));
    assert_eq!(updated.hint, "");
    assert_eq!(updated.revision_number, 1);
}

#[tokio::test]
async fn deletes_with_per_item_statuses() {
    let mut h = Harness::start().await;
    let created = create_ok(&mut h, entry("/web", AGENT, &["unix:uid:1"])).await;
    let resp = h
        .entries
        .batch_delete_entry(BatchDeleteEntryRequest {
            ids: vec![created.id.clone(), "missing".into(), String::new()],
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = resp
        .results
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(
        codes,
        [0, Code::NotFound as i32, Code::InvalidArgument as i32]
    );
    assert_eq!(resp.results[0].id, created.id);
    assert_eq!(
        resp.results[1].status.as_ref().unwrap().message,
        "entry not found"
    );
    assert_eq!(stored_count(&h).await, 0);
}

#[tokio::test]
async fn agent_only_methods_refuse_local_callers() {
    let mut h = Harness::start().await;
    let err = h
        .entries
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = h
        .entries
        .sync_authorized_entries(tokio_stream::iter(vec![
            SyncAuthorizedEntriesRequest::default(),
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

// === sync protocol ===

fn stored(n: usize) -> Vec<Arc<RegistrationEntry>> {
    (0..n)
        .map(|i| {
            let mut e = signet_proto::convert::validated_entry(
                &entry(&format!("/w{i}"), AGENT, &["unix:uid:1"]),
                &td(),
            )
            .unwrap();
            e.id = format!("id{i:02}");
            e.revision_number = i as i64;
            e.created_at = 1000 + i as i64;
            Arc::new(e)
        })
        .collect()
}

#[test]
fn first_request_must_not_name_ids_or_mask_the_revision() {
    assert!(check_initial(&SyncAuthorizedEntriesRequest::default()).is_ok());
    let err = check_initial(&SyncAuthorizedEntriesRequest {
        ids: vec!["x".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "specifying IDs on initial request is not supported"
    );
    let err = check_initial(&SyncAuthorizedEntriesRequest {
        output_mask: Some(types::EntryMask::default()),
        ids: vec![],
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "revision number cannot be masked");
}

#[test]
fn a_single_page_carries_full_entries() {
    let entries = stored(3);
    let pages = initial_pages(&entries, None, 3);
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].entries.len(), 3);
    assert!(pages[0].entry_revisions.is_empty() && !pages[0].more);
    assert_eq!(pages[0].entries[2].spiffe_id, sid("/w2"));

    let empty = initial_pages(&[], None, 500);
    assert_eq!(empty.len(), 1);
    assert!(empty[0].entries.is_empty() && !empty[0].more);
}

#[test]
fn more_entries_than_a_page_send_revisions_in_pages() {
    let entries = stored(5);
    let pages = initial_pages(&entries, None, 2);
    let shape: Vec<(usize, bool)> = pages
        .iter()
        .map(|p| (p.entry_revisions.len(), p.more))
        .collect();
    assert_eq!(shape, [(2, true), (2, true), (1, false)]);
    assert!(pages.iter().all(|p| p.entries.is_empty()));
    let rev = &pages[1].entry_revisions[0];
    assert_eq!(
        (rev.id.as_str(), rev.revision_number, rev.created_at),
        ("id02", 2, 1002)
    );
}

#[test]
fn requested_ids_return_only_authorized_entries_in_pages() {
    let entries = stored(5);
    let ids = ["id04", "id00", "unknown", "id02", "id00"]
        .map(String::from)
        .to_vec();
    let pages = requested_pages(&entries, ids, None, 2);
    let shape: Vec<(Vec<&str>, bool)> =
        pages.iter().map(|p| (ids_of(&p.entries), p.more)).collect();
    assert_eq!(shape, [(vec!["id00", "id02"], true), (vec!["id04"], false)]);

    let none = requested_pages(&entries, vec!["zzz".into()], None, 2);
    assert_eq!(none.len(), 1);
    assert!(none[0].entries.is_empty() && !none[0].more);
}

fn ids_of(entries: &[types::Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

#[tokio::test]
async fn sync_stream_pages_revisions_then_serves_requested_ids() {
    let (req_tx, req_rx) = mpsc::channel(4);
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(serve(stored(5), ReceiverStream::new(req_rx), tx, 2));
    let mask = types::EntryMask {
        revision_number: true,
        spiffe_id: true,
        ..Default::default()
    };
    req_tx
        .send(Ok(SyncAuthorizedEntriesRequest {
            output_mask: Some(mask),
            ids: vec![],
        }))
        .await
        .unwrap();
    let mut revisions = vec![];
    loop {
        let page = rx.recv().await.unwrap().unwrap();
        revisions.extend(page.entry_revisions.into_iter().map(|r| r.id));
        if !page.more {
            break;
        }
    }
    assert_eq!(revisions, ["id00", "id01", "id02", "id03", "id04"]);

    req_tx
        .send(Ok(SyncAuthorizedEntriesRequest {
            output_mask: None,
            ids: vec!["id03".into(), "id01".into(), "id04".into()],
        }))
        .await
        .unwrap();
    let first = rx.recv().await.unwrap().unwrap();
    let second = rx.recv().await.unwrap().unwrap();
    assert!(first.more && !second.more);
    assert_eq!(ids_of(&first.entries), ["id01", "id03"]);
    assert_eq!(ids_of(&second.entries), ["id04"]);
    // The first request's mask applies throughout.
    assert!(second.entries[0].parent_id.is_none());
    assert_eq!(second.entries[0].spiffe_id, sid("/w4"));

    drop(req_tx);
    assert!(rx.recv().await.is_none());
    task.await.unwrap();
}

#[tokio::test]
async fn sync_stream_with_one_page_ends_after_it() {
    let (req_tx, req_rx) = mpsc::channel(4);
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(serve(stored(2), ReceiverStream::new(req_rx), tx, 500));
    req_tx
        .send(Ok(SyncAuthorizedEntriesRequest::default()))
        .await
        .unwrap();
    let page = rx.recv().await.unwrap().unwrap();
    assert_eq!(page.entries.len(), 2);
    assert!(!page.more);
    assert!(rx.recv().await.is_none());
    task.await.unwrap();
}

#[tokio::test]
async fn sync_stream_refuses_a_bad_first_request() {
    let (req_tx, req_rx) = mpsc::channel(4);
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(serve(stored(2), ReceiverStream::new(req_rx), tx, 500));
    req_tx
        .send(Ok(SyncAuthorizedEntriesRequest {
            output_mask: None,
            ids: vec!["id00".into()],
        }))
        .await
        .unwrap();
    let err = rx.recv().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(rx.recv().await.is_none());
    task.await.unwrap();
}

#[test]
fn paging_follows_the_token_and_ignores_it_without_a_page_size() {
    let items = || vec!["a", "b", "c"];
    assert_eq!(
        super::filter::page(items(), key_of, 2, ""),
        (vec!["a", "b"], "b".into())
    );
    assert_eq!(
        super::filter::page(items(), key_of, 2, "b"),
        (vec!["c"], String::new())
    );
    assert_eq!(
        super::filter::page(items(), key_of, 3, ""),
        (items(), String::new())
    );
    assert_eq!(
        super::filter::page(items(), key_of, 0, "b"),
        (items(), String::new())
    );
    assert_eq!(
        super::filter::page(items(), key_of, -1, ""),
        (items(), String::new())
    );
    assert_eq!(
        super::filter::page(items(), key_of, 2, "c"),
        (vec![], String::new())
    );
}

fn key_of<'a>(s: &'a &str) -> &'a str {
    s
}

#[tokio::test]
async fn a_failed_store_write_is_reported_and_changes_neither_store_nor_index() {
    let (sled, dir) = crate::datastore::testing::temp_sled();
    let failing = Arc::new(crate::datastore::testing::FailingStore::new(sled));
    let mut h = Harness::start_on(failing.clone(), dir).await;
    let agent = id::parse_id(&format!("spiffe://example.org{AGENT}")).unwrap();
    let before = create_ok(&mut h, entry("/web", AGENT, &["unix:uid:1"])).await;

    failing.fail_writes(true);
    let r = create(&mut h, vec![entry("/db", AGENT, &["unix:uid:2"])]).await;
    let status = r[0].status.as_ref().unwrap();
    assert_eq!(Code::from(status.code), Code::Internal, "{status:?}");
    assert!(r[0].entry.is_none());
    let mut changed = before.clone();
    changed.spiffe_id = sid("/changed");
    let updated = h
        .entries
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![changed],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(updated.results[0].status.as_ref().unwrap().code, 0);
    failing.fail_writes(false);

    assert_eq!(stored_count(&h).await, 1);
    let authorized: Vec<String> = h
        .state
        .registry
        .authorized_entries(&agent)
        .iter()
        .map(|e| e.spiffe_id.path().to_owned())
        .collect();
    assert_eq!(
        authorized,
        ["/web"],
        "the index follows only committed writes"
    );
}
