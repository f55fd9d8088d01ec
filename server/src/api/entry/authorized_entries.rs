//! The `SyncAuthorizedEntries` protocol (SPIRE `entry/v1/service.go`):
//! 1. The agent sends `{output_mask}`; `ids` must be empty and `revision_number` may not be
//!    masked off.
//! 2. With at most one page of entries the server sends them all in one response and ends.
//!    Otherwise it sends pages of `entry_revisions{id, revision_number, created_at}`, `more`
//!    set on all but the last.
//! 3. The agent then sends `{ids}` requests; each is answered with the full entries among
//!    those IDs it is authorized for, paged, `more` set on all but the last response.
//! 4. The stream ends when the agent closes its side.

use std::sync::Arc;

use signet_common::entry::RegistrationEntry;
use signet_proto::spire::api::server::entry::v1::{
    EntryRevision, SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use signet_proto::types;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};

use crate::api::ApiError;
use signet_proto::convert::entry_to_proto;

/// Entries per response, as in SPIRE (`defaultEntryPageSize`).
pub const SYNC_PAGE_SIZE: usize = 500;

type Reply = Result<SyncAuthorizedEntriesResponse, Status>;

/// Checks the first request of a sync stream.
pub(super) fn check_initial(req: &SyncAuthorizedEntriesRequest) -> Result<(), ApiError> {
    if !req.ids.is_empty() {
        return Err(ApiError::InvalidArgument(
            "specifying IDs on initial request is not supported".into(),
        ));
    }
    if req.output_mask.as_ref().is_some_and(|m| !m.revision_number) {
        return Err(ApiError::InvalidArgument(
            "revision number cannot be masked".into(),
        ));
    }
    Ok(())
}

/// The answer to the first request: the full entries when they fit in one page, otherwise
/// pages of revisions. Always at least one response.
pub(super) fn initial_pages(
    entries: &[Arc<RegistrationEntry>],
    mask: Option<&types::EntryMask>,
    page_size: usize,
) -> Vec<SyncAuthorizedEntriesResponse> {
    let page_size = page_size.max(1);
    if entries.len() <= page_size {
        return vec![SyncAuthorizedEntriesResponse {
            entries: entries.iter().map(|e| entry_to_proto(e, mask)).collect(),
            ..Default::default()
        }];
    }
    let pages = entries.chunks(page_size);
    let last = pages.len() - 1;
    pages
        .enumerate()
        .map(|(i, chunk)| SyncAuthorizedEntriesResponse {
            entry_revisions: chunk
                .iter()
                .map(|e| EntryRevision {
                    id: e.id.clone(),
                    revision_number: e.revision_number,
                    created_at: e.created_at,
                })
                .collect(),
            entries: vec![],
            more: i < last,
        })
        .collect()
}

/// The answer to an `{ids}` request: the full entries (sorted by ID) among `ids`, paged; IDs
/// the agent is not authorized for are skipped. Always at least one response.
pub(super) fn requested_pages(
    sorted_entries: &[Arc<RegistrationEntry>],
    mut ids: Vec<String>,
    mask: Option<&types::EntryMask>,
    page_size: usize,
) -> Vec<SyncAuthorizedEntriesResponse> {
    ids.sort_unstable();
    ids.dedup();
    let found: Vec<types::Entry> = ids
        .iter()
        .filter_map(|id| {
            sorted_entries
                .binary_search_by(|e| e.id.as_str().cmp(id))
                .ok()
                .map(|i| entry_to_proto(&sorted_entries[i], mask))
        })
        .collect();
    if found.is_empty() {
        return vec![SyncAuthorizedEntriesResponse::default()];
    }
    let pages = found.chunks(page_size.max(1));
    let last = pages.len() - 1;
    pages
        .enumerate()
        .map(|(i, chunk)| SyncAuthorizedEntriesResponse {
            entry_revisions: vec![],
            entries: chunk.to_vec(),
            more: i < last,
        })
        .collect()
}

/// Runs one sync stream over `entries` (a snapshot taken when the stream opened) until the
/// agent closes its side or goes away.
pub(super) async fn serve<S>(
    mut entries: Vec<Arc<RegistrationEntry>>,
    mut inbound: S,
    tx: mpsc::Sender<Reply>,
    page_size: usize,
) where
    S: Stream<Item = Result<SyncAuthorizedEntriesRequest, Status>> + Unpin,
{
    let first = match inbound.next().await {
        Some(Ok(req)) => req,
        Some(Err(status)) => return end_with(&tx, status).await,
        None => return,
    };
    if let Err(e) = check_initial(&first) {
        let _ = tx.send(Err(e.into())).await;
        return;
    }
    let mask = first.output_mask;
    let pages = initial_pages(&entries, mask.as_ref(), page_size);
    let all_sent = entries.len() <= page_size.max(1);
    if !send_all(&tx, pages).await || all_sent {
        return;
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    while let Some(next) = inbound.next().await {
        let req = match next {
            Ok(req) => req,
            Err(status) => return end_with(&tx, status).await,
        };
        let pages = requested_pages(&entries, req.ids, mask.as_ref(), page_size);
        if !send_all(&tx, pages).await {
            return;
        }
    }
}

/// Sends the pages in order; false once the agent has gone.
async fn send_all(tx: &mpsc::Sender<Reply>, pages: Vec<SyncAuthorizedEntriesResponse>) -> bool {
    for page in pages {
        if tx.send(Ok(page)).await.is_err() {
            return false;
        }
    }
    true
}

/// A message that cannot be read ends the stream with its status (SPIRE returns the
/// `Recv` error), never with OK and zero messages.
async fn end_with(tx: &mpsc::Sender<Reply>, status: Status) {
    finished(&status);
    if status.code() != Code::Cancelled {
        let _ = tx.send(Err(status)).await;
    }
}

/// A receive error ends the stream; cancellation is the normal way for an agent to leave.
fn finished(status: &Status) {
    if status.code() != Code::Cancelled {
        tracing::debug!(error = %status, "Sync stream ended by a receive error");
    }
}
