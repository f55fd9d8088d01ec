//! The agent's side of `SyncAuthorizedEntries` (SPIRE `pkg/agent/client`):
//! - it sends `{}` (no mask: every field);
//! - with at most one page of entries the server answers with them all, in one response;
//! - otherwise it streams pages of `entry_revisions{id, revision_number, created_at}`
//!   (`more` on all but the last); the agent keeps the entries it already holds at that
//!   revision, asks for the others with `{ids}` (sorted, at most a page per request, each
//!   answered by pages of full entries ending with `more = false`), drops the ones not listed,
//!   and closes its side.

use std::collections::BTreeMap;
use std::sync::Arc;

use signet_common::entry::RegistrationEntry;
use signet_proto::spire::api::server::entry::v1::{
    SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use crate::client::error::ClientError;

/// Entries per `{ids}` request (SPIRE's page size).
pub const PAGE_SIZE: usize = 500;

/// The entries the agent holds, by ID.
pub type Known = BTreeMap<String, Arc<RegistrationEntry>>;

/// Runs the protocol over an open stream whose first request (`{}`) was already sent.
/// Returns every authorized entry, ordered by ID; unchanged ones are the `known` Arcs.
pub async fn run<S>(
    tx: mpsc::Sender<SyncAuthorizedEntriesRequest>,
    mut responses: S,
    known: &Known,
) -> Result<Vec<Arc<RegistrationEntry>>, ClientError>
where
    S: Stream<Item = Result<SyncAuthorizedEntriesResponse, tonic::Status>> + Unpin,
{
    let first = next(&mut responses).await?;
    if first.entry_revisions.is_empty() && !first.more {
        drop(tx);
        let mut out = convert_all(&first.entries, known);
        out.sort_by(|a, b| a.id.cmp(&b.id));
        return Ok(out);
    }
    let mut revisions = first.entry_revisions;
    let mut more = first.more;
    while more {
        let page = next(&mut responses).await?;
        revisions.extend(page.entry_revisions);
        more = page.more;
    }
    let mut out = Vec::with_capacity(revisions.len());
    let mut stale = Vec::new();
    for rev in revisions {
        match known.get(&rev.id) {
            Some(e)
                if e.revision_number == rev.revision_number && e.created_at == rev.created_at =>
            {
                out.push(Arc::clone(e));
            }
            _ => stale.push(rev.id),
        }
    }
    stale.sort_unstable();
    stale.dedup();
    for ids in stale.chunks(PAGE_SIZE) {
        let req = SyncAuthorizedEntriesRequest {
            output_mask: None,
            ids: ids.to_vec(),
        };
        tx.send(req)
            .await
            .map_err(|_| ClientError::Malformed("sync stream closed by the server".into()))?;
        loop {
            let page = next(&mut responses).await?;
            out.extend(convert_all(&page.entries, known));
            if !page.more {
                break;
            }
        }
    }
    drop(tx);
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

async fn next<S>(responses: &mut S) -> Result<SyncAuthorizedEntriesResponse, ClientError>
where
    S: Stream<Item = Result<SyncAuthorizedEntriesResponse, tonic::Status>> + Unpin,
{
    match responses.next().await {
        Some(Ok(r)) => Ok(r),
        Some(Err(status)) => Err(ClientError::Status(status)),
        None => Err(ClientError::Malformed(
            "sync stream ended before the last page".into(),
        )),
    }
}

/// Converts entries, skipping (and logging) malformed ones; an entry equal to the one held
/// keeps its Arc, so later pointer comparisons see it unchanged.
fn convert_all(
    entries: &[signet_proto::types::Entry],
    known: &Known,
) -> Vec<Arc<RegistrationEntry>> {
    entries
        .iter()
        .filter_map(|p| match RegistrationEntry::try_from(p) {
            Ok(e) => Some(match known.get(&e.id) {
                Some(k) if **k == e => Arc::clone(k),
                _ => Arc::new(e),
            }),
            Err(error) => {
                tracing::warn!(%error, entry_id = %p.id, "Ignoring a malformed entry from the server");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use signet_proto::spire::api::server::entry::v1::EntryRevision;
    use signet_proto::types;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;

    fn proto(id: &str, rev: i64) -> types::Entry {
        types::Entry {
            id: id.into(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: format!("/w/{id}"),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: "/spire/agent/join_token/t".into(),
            }),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1".into(),
            }],
            revision_number: rev,
            created_at: 1,
            ..Default::default()
        }
    }

    /// A server following SPIRE's protocol with `page` entries per page over `entries`;
    /// returns the `{ids}` requests it received.
    async fn fake_server(
        entries: Vec<types::Entry>,
        page: usize,
        known: &Known,
    ) -> (Vec<Arc<RegistrationEntry>>, Vec<Vec<String>>) {
        let (req_tx, mut req_rx) = mpsc::channel::<SyncAuthorizedEntriesRequest>(4);
        let (resp_tx, resp_rx) = mpsc::channel(4);
        let server = tokio::spawn(async move {
            let mut seen = vec![];
            if entries.len() <= page {
                let _ = resp_tx
                    .send(Ok(SyncAuthorizedEntriesResponse {
                        entries,
                        ..Default::default()
                    }))
                    .await;
                return seen;
            }
            let chunks: Vec<_> = entries.chunks(page).collect();
            for (i, c) in chunks.iter().enumerate() {
                let revs = c
                    .iter()
                    .map(|e| EntryRevision {
                        id: e.id.clone(),
                        revision_number: e.revision_number,
                        created_at: e.created_at,
                    })
                    .collect();
                let more = i + 1 < chunks.len();
                let _ = resp_tx
                    .send(Ok(SyncAuthorizedEntriesResponse {
                        entry_revisions: revs,
                        entries: vec![],
                        more,
                    }))
                    .await;
            }
            while let Some(req) = req_rx.recv().await {
                seen.push(req.ids.clone());
                let found: Vec<_> = entries
                    .iter()
                    .filter(|e| req.ids.contains(&e.id))
                    .cloned()
                    .collect();
                let pages: Vec<_> = found.chunks(page).map(<[_]>::to_vec).collect();
                let n = pages.len().max(1);
                for i in 0..n {
                    let _ = resp_tx
                        .send(Ok(SyncAuthorizedEntriesResponse {
                            entry_revisions: vec![],
                            entries: pages.get(i).cloned().unwrap_or_default(),
                            more: i + 1 < n,
                        }))
                        .await;
                }
            }
            seen
        });
        let got = run(req_tx, ReceiverStream::new(resp_rx), known)
            .await
            .unwrap();
        (got, server.await.unwrap())
    }

    fn known_of(entries: &[Arc<RegistrationEntry>]) -> Known {
        entries
            .iter()
            .map(|e| (e.id.clone(), Arc::clone(e)))
            .collect()
    }

    #[tokio::test]
    async fn a_single_page_carries_every_entry() {
        let entries = vec![proto("b", 0), proto("a", 0)];
        let (got, asked) = fake_server(entries, 500, &Known::new()).await;
        let ids: Vec<_> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(asked.is_empty());
    }

    #[tokio::test]
    async fn paged_sync_fetches_only_new_or_changed_entries() {
        let all: Vec<_> = (0..7).map(|i| proto(&format!("e{i}"), 0)).collect();
        let (first, asked) = fake_server(all.clone(), 3, &Known::new()).await;
        assert_eq!(first.len(), 7);
        assert_eq!(asked.len(), 1, "7 stale IDs fit one request");
        assert_eq!(asked[0].len(), 7);

        // e1 changes, e6 goes away, e9 appears.
        let mut next: Vec<_> = all.iter().filter(|e| e.id != "e6").cloned().collect();
        next[1].revision_number = 1;
        next.push(proto("e9", 0));
        let known = known_of(&first);
        let (second, asked) = fake_server(next, 3, &known).await;
        assert_eq!(asked, vec![vec!["e1".to_owned(), "e9".to_owned()]]);
        let ids: Vec<_> = second.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4", "e5", "e9"]);
        assert_eq!(second[1].revision_number, 1);
        assert!(
            Arc::ptr_eq(&second[0], &known["e0"]),
            "unchanged entries are kept, not refetched"
        );
    }

    #[tokio::test]
    async fn an_empty_page_set_means_no_entries() {
        let (got, _) = fake_server(vec![], 500, &Known::new()).await;
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_is_an_error() {
        let (tx, _rx) = mpsc::channel(1);
        let (resp_tx, resp_rx) = mpsc::channel(2);
        resp_tx
            .send(Ok(SyncAuthorizedEntriesResponse {
                entry_revisions: vec![EntryRevision {
                    id: "a".into(),
                    revision_number: 0,
                    created_at: 0,
                }],
                entries: vec![],
                more: true,
            }))
            .await
            .unwrap();
        drop(resp_tx);
        let err = run(tx, ReceiverStream::new(resp_rx), &Known::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ended"), "{err}");
    }
}
