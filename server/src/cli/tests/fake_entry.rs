//! An in-memory Entry API on a Unix socket in a temp dir, enough to drive the `entry`
//! commands end to end. It pages `ListEntries` two entries at a time to exercise paging.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use signet_proto::spire::api::server::entry::v1::entry_server::{Entry, EntryServer};
use signet_proto::spire::api::server::entry::v1::*;
use signet_proto::types;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const PAGE: usize = 2;

/// What the fake holds and saw.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) entries: Vec<types::Entry>,
    pub(crate) next_id: u32,
    pub(crate) last_update_mask: Option<types::EntryMask>,
    pub(crate) last_list_filter: Option<list_entries_request::Filter>,
}

#[derive(Debug, Clone, Default)]
struct FakeEntry(Arc<Mutex<State>>);

/// A running fake; dropping it stops the server and removes the socket.
pub(crate) struct FakeEntryServer {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) socket: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl FakeEntryServer {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let fake = FakeEntry::default();
        let state = fake.0.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EntryServer::new(fake))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            state,
            socket: path.to_str().unwrap().to_owned(),
            _dir: dir,
            _stop: stop,
        }
    }

    pub(crate) fn entry_ids(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.entries.iter().map(|e| e.id.clone()).collect()
    }
}

fn status(code: tonic::Code, message: &str) -> Option<types::Status> {
    Some(types::Status {
        code: code as i32,
        message: message.to_owned(),
    })
}

fn similar(a: &types::Entry, b: &types::Entry) -> bool {
    let set = |e: &types::Entry| -> BTreeSet<(String, String)> {
        e.selectors
            .iter()
            .map(|s| (s.r#type.clone(), s.value.clone()))
            .collect()
    };
    a.spiffe_id == b.spiffe_id && a.parent_id == b.parent_id && set(a) == set(b)
}

#[tonic::async_trait]
impl Entry for FakeEntry {
    async fn count_entries(
        &self,
        _: Request<CountEntriesRequest>,
    ) -> Result<Response<CountEntriesResponse>, Status> {
        let count = self.0.lock().unwrap().entries.len();
        Ok(Response::new(CountEntriesResponse {
            count: i32::try_from(count).unwrap(),
        }))
    }

    async fn list_entries(
        &self,
        req: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        let req = req.into_inner();
        let mut state = self.0.lock().unwrap();
        state.last_list_filter = req.filter.clone();
        let by_id = req.filter.and_then(|f| f.by_spiffe_id);
        let matching: Vec<_> = state
            .entries
            .iter()
            .filter(|e| by_id.is_none() || e.spiffe_id == by_id)
            .cloned()
            .collect();
        let start: usize = req.page_token.parse().unwrap_or(0);
        let end = (start + PAGE).min(matching.len());
        let next = if end < matching.len() {
            end.to_string()
        } else {
            String::new()
        };
        Ok(Response::new(ListEntriesResponse {
            entries: matching[start..end].to_vec(),
            next_page_token: next,
        }))
    }

    async fn get_entry(
        &self,
        req: Request<GetEntryRequest>,
    ) -> Result<Response<types::Entry>, Status> {
        let id = req.into_inner().id;
        let state = self.0.lock().unwrap();
        match state.entries.iter().find(|e| e.id == id) {
            Some(e) => Ok(Response::new(e.clone())),
            None => Err(Status::not_found("entry not found")),
        }
    }

    async fn batch_create_entry(
        &self,
        req: Request<BatchCreateEntryRequest>,
    ) -> Result<Response<BatchCreateEntryResponse>, Status> {
        let mut state = self.0.lock().unwrap();
        let mut results = Vec::new();
        for mut e in req.into_inner().entries {
            if state.entries.iter().any(|have| similar(have, &e)) {
                results.push(batch_create_entry_response::Result {
                    status: status(tonic::Code::AlreadyExists, "similar entry already exists"),
                    entry: None,
                });
                continue;
            }
            if e.id.is_empty() {
                state.next_id += 1;
                e.id = format!("entry-{}", state.next_id);
            }
            state.entries.push(e.clone());
            results.push(batch_create_entry_response::Result {
                status: status(tonic::Code::Ok, "OK"),
                entry: Some(e),
            });
        }
        Ok(Response::new(BatchCreateEntryResponse { results }))
    }

    async fn batch_update_entry(
        &self,
        req: Request<BatchUpdateEntryRequest>,
    ) -> Result<Response<BatchUpdateEntryResponse>, Status> {
        let req = req.into_inner();
        let mut state = self.0.lock().unwrap();
        state.last_update_mask = req.input_mask;
        let mut results = Vec::new();
        for e in req.entries {
            let result = match state.entries.iter_mut().find(|have| have.id == e.id) {
                Some(have) => {
                    let revision = have.revision_number + 1;
                    *have = types::Entry {
                        revision_number: revision,
                        ..e
                    };
                    batch_update_entry_response::Result {
                        status: status(tonic::Code::Ok, "OK"),
                        entry: Some(have.clone()),
                    }
                }
                None => batch_update_entry_response::Result {
                    status: status(tonic::Code::NotFound, "entry not found"),
                    entry: None,
                },
            };
            results.push(result);
        }
        Ok(Response::new(BatchUpdateEntryResponse { results }))
    }

    async fn batch_delete_entry(
        &self,
        req: Request<BatchDeleteEntryRequest>,
    ) -> Result<Response<BatchDeleteEntryResponse>, Status> {
        let mut state = self.0.lock().unwrap();
        let mut results = Vec::new();
        for id in req.into_inner().ids {
            let before = state.entries.len();
            state.entries.retain(|e| e.id != id);
            let status = if state.entries.len() < before {
                status(tonic::Code::Ok, "OK")
            } else {
                status(tonic::Code::NotFound, "entry not found")
            };
            results.push(batch_delete_entry_response::Result { status, id });
        }
        Ok(Response::new(BatchDeleteEntryResponse { results }))
    }

    async fn get_authorized_entries(
        &self,
        _: Request<GetAuthorizedEntriesRequest>,
    ) -> Result<Response<GetAuthorizedEntriesResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    type SyncAuthorizedEntriesStream =
        tokio_stream::Empty<Result<SyncAuthorizedEntriesResponse, Status>>;

    async fn sync_authorized_entries(
        &self,
        _: Request<tonic::Streaming<SyncAuthorizedEntriesRequest>>,
    ) -> Result<Response<Self::SyncAuthorizedEntriesStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}
