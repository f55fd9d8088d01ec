//! `spire.api.server.entry.v1.Entry`: registration entry CRUD for admins, and the entries an
//! agent is authorized for (`GetAuthorizedEntries`, `SyncAuthorizedEntries`).
//!
//! Every write goes through the `Registry`, so the store, the authorization index and the
//! change push stay in step. Messages follow SPIRE's `pkg/server/api/entry/v1/service.go`.

use std::sync::Arc;

use signet_common::entry::RegistrationEntry;
use signet_common::id;
use signet_proto::spire::api::server::entry::v1::entry_server::Entry;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, BatchCreateEntryResponse, BatchDeleteEntryRequest,
    BatchDeleteEntryResponse, BatchUpdateEntryRequest, BatchUpdateEntryResponse,
    CountEntriesRequest, CountEntriesResponse, GetAuthorizedEntriesRequest,
    GetAuthorizedEntriesResponse, GetEntryRequest, ListEntriesRequest, ListEntriesResponse,
    SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse, batch_create_entry_response,
    batch_delete_entry_response, batch_update_entry_response,
};
use signet_proto::types;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::{ApiError, ApiState, ok_status};
use crate::datastore::StoreError;
use signet_proto::convert::{entry_to_proto, validated_entry};

mod authorized_entries;
mod filter;
#[cfg(test)]
mod tests;

pub use authorized_entries::SYNC_PAGE_SIZE;
pub(crate) use filter::{check_trust_domain_token, page};

/// The entry service.
#[derive(Debug, Clone)]
pub struct EntryService {
    state: Arc<ApiState>,
}

impl EntryService {
    /// A service over the shared API state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }
}

/// Why creating one entry failed: SPIRE returns the existing entry with a similar one.
enum CreateError {
    Similar(Box<RegistrationEntry>),
    Refused(ApiError),
}

impl From<ApiError> for CreateError {
    fn from(e: ApiError) -> Self {
        Self::Refused(e)
    }
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        Self::Refused(e.into())
    }
}

/// The same error with `prefix: ` in front of its message (SPIRE's `MakeErr(msg, err)`).
pub(crate) fn with_context(prefix: &str, err: ApiError) -> ApiError {
    err.context(prefix)
}

// === impl EntryService ===

impl EntryService {
    async fn create(&self, proto: &types::Entry) -> Result<RegistrationEntry, CreateError> {
        let mut entry = validated_entry(proto, &self.state.trust_domain)
            .map_err(|e| with_context("failed to convert entry", e.into()))?;
        let store = self.state.registry.store();
        if let Some(existing) = store
            .entries_by_spiffe_id(&entry.spiffe_id)
            .await?
            .into_iter()
            .find(|e| e.is_similar(&entry))
        {
            return Err(CreateError::Similar(Box::new(existing)));
        }
        self.require_federated_bundles(&entry.federates_with)
            .await
            .map_err(|e| with_context("failed to create entry", e))?;
        if entry.id.is_empty() {
            entry.id = uuid::Uuid::new_v4().to_string();
        }
        entry.created_at = self.state.clock.unix_now();
        entry.revision_number = 0;
        match self.state.registry.create_entry(entry).await {
            Ok(created) => Ok(created),
            Err(StoreError::SimilarEntry(existing)) => Err(CreateError::Similar(existing)),
            Err(e) => Err(with_context("failed to create entry", e.into()).into()),
        }
    }

    async fn update(
        &self,
        proto: &types::Entry,
        mask: Option<&types::EntryMask>,
    ) -> Result<RegistrationEntry, ApiError> {
        let ctx = |e| with_context("failed to update entry", e);
        if proto.id.is_empty() {
            return Err(ctx(ApiError::BadRequest("missing entry ID".into())));
        }
        let stored = self
            .state
            .registry
            .store()
            .entry(&proto.id)
            .await?
            .ok_or_else(|| ctx(ApiError::Missing("entry not found".into())))?;
        let merged = merge_entry(entry_to_proto(&stored, None), proto, mask);
        let mut entry = validated_entry(&merged, &self.state.trust_domain)
            .map_err(|e| with_context("failed to convert entry", e.into()))?;
        if mask.is_none_or(|m| m.federates_with) {
            self.require_federated_bundles(&entry.federates_with)
                .await
                .map_err(ctx)?;
        }
        entry.id = stored.id;
        entry.created_at = stored.created_at;
        entry.revision_number = stored.revision_number;
        self.state
            .registry
            .update_entry(entry)
            .await
            .map_err(|e| ctx(e.into()))
    }

    async fn delete(&self, id: &str) -> Result<(), ApiError> {
        if id.is_empty() {
            return Err(ApiError::BadRequest("missing entry ID".into()));
        }
        match self.state.registry.delete_entry(id).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(ApiError::Missing("entry not found".into())),
            Err(e) => Err(with_context("failed to delete entry", e.into())),
        }
    }

    /// Every trust domain an entry federates with must have a bundle (SPIRE's
    /// `makeFederatesWith`).
    async fn require_federated_bundles(&self, federates_with: &[String]) -> Result<(), ApiError> {
        let store = self.state.registry.store();
        for name in federates_with {
            let td = id::parse_trust_domain(name)?;
            if store.bundle(&td).await?.is_none() {
                return Err(ApiError::BadRequest(format!(
                    "unable to find federated bundle {:?}",
                    td.id_string()
                )));
            }
        }
        Ok(())
    }
}

/// `stored` with the fields selected by `mask` (all when `None`) taken from `input`.
fn merge_entry(
    mut stored: types::Entry,
    input: &types::Entry,
    mask: Option<&types::EntryMask>,
) -> types::Entry {
    let all = mask.is_none();
    let m = mask.cloned().unwrap_or_default();
    let input = input.clone();
    if all || m.spiffe_id {
        stored.spiffe_id = input.spiffe_id;
    }
    if all || m.parent_id {
        stored.parent_id = input.parent_id;
    }
    if all || m.selectors {
        stored.selectors = input.selectors;
    }
    if all || m.x509_svid_ttl {
        stored.x509_svid_ttl = input.x509_svid_ttl;
    }
    if all || m.jwt_svid_ttl {
        stored.jwt_svid_ttl = input.jwt_svid_ttl;
    }
    if all || m.federates_with {
        stored.federates_with = input.federates_with;
    }
    if all || m.admin {
        stored.admin = input.admin;
    }
    if all || m.downstream {
        stored.downstream = input.downstream;
    }
    if all || m.expires_at {
        stored.expires_at = input.expires_at;
    }
    if all || m.dns_names {
        stored.dns_names = input.dns_names;
    }
    if all || m.store_svid {
        stored.store_svid = input.store_svid;
    }
    if all || m.hint {
        stored.hint = input.hint;
    }
    stored
}

#[tonic::async_trait]
impl Entry for EntryService {
    async fn count_entries(
        &self,
        req: Request<CountEntriesRequest>,
    ) -> Result<Response<CountEntriesResponse>, Status> {
        self.state.require_admin(&req).await?;
        let filter = filter::EntryFilter::from_count(
            &self.state.trust_domain,
            req.get_ref().filter.as_ref(),
        )?;
        let count = filter.count(self.state.registry.store().as_ref()).await?;
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        Ok(Response::new(CountEntriesResponse { count }))
    }

    async fn list_entries(
        &self,
        req: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let filter = filter::EntryFilter::from_list(&self.state.trust_domain, req.filter.as_ref())?;
        filter::check_entry_token(req.page_size, &req.page_token)?;
        let (page, next_page_token) = filter
            .select_page(
                self.state.registry.store().as_ref(),
                req.page_size,
                &req.page_token,
            )
            .await?;
        Ok(Response::new(ListEntriesResponse {
            entries: page
                .iter()
                .map(|e| entry_to_proto(e, req.output_mask.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_entry(
        &self,
        req: Request<GetEntryRequest>,
    ) -> Result<Response<types::Entry>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        if req.id.is_empty() {
            return Err(ApiError::BadRequest("missing ID".into()).into());
        }
        let entry = self
            .state
            .registry
            .store()
            .entry(&req.id)
            .await
            .map_err(|e| with_context("failed to fetch entry", e.into()))?
            .ok_or_else(|| ApiError::Missing("entry not found".into()))?;
        Ok(Response::new(entry_to_proto(
            &entry,
            req.output_mask.as_ref(),
        )))
    }

    async fn batch_create_entry(
        &self,
        req: Request<BatchCreateEntryRequest>,
    ) -> Result<Response<BatchCreateEntryResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let mask = req.output_mask.as_ref();
        let mut results = Vec::new();
        for proto in req.entries.iter() {
            results.push(match self.create(proto).await {
                Ok(e) => batch_create_entry_response::Result {
                    status: Some(ok_status()),
                    entry: Some(entry_to_proto(&e, mask)),
                },
                Err(CreateError::Similar(existing)) => batch_create_entry_response::Result {
                    status: Some(
                        ApiError::Duplicate("similar entry already exists".into()).to_item_status(),
                    ),
                    entry: Some(entry_to_proto(&existing, mask)),
                },
                Err(CreateError::Refused(e)) => batch_create_entry_response::Result {
                    status: Some(e.to_item_status()),
                    entry: None,
                },
            });
        }
        Ok(Response::new(BatchCreateEntryResponse { results }))
    }

    async fn batch_update_entry(
        &self,
        req: Request<BatchUpdateEntryRequest>,
    ) -> Result<Response<BatchUpdateEntryResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let mut results = Vec::new();
        for proto in req.entries.iter() {
            results.push(match self.update(proto, req.input_mask.as_ref()).await {
                Ok(e) => batch_update_entry_response::Result {
                    status: Some(ok_status()),
                    entry: Some(entry_to_proto(&e, req.output_mask.as_ref())),
                },
                Err(e) => batch_update_entry_response::Result {
                    status: Some(e.to_item_status()),
                    entry: None,
                },
            });
        }
        Ok(Response::new(BatchUpdateEntryResponse { results }))
    }

    async fn batch_delete_entry(
        &self,
        req: Request<BatchDeleteEntryRequest>,
    ) -> Result<Response<BatchDeleteEntryResponse>, Status> {
        self.state.require_admin(&req).await?;
        let mut results = Vec::new();
        for id in req.into_inner().ids {
            results.push(batch_delete_entry_response::Result {
                status: Some(match self.delete(&id).await {
                    Ok(()) => ok_status(),
                    Err(e) => e.to_item_status(),
                }),
                id,
            });
        }
        Ok(Response::new(BatchDeleteEntryResponse { results }))
    }

    async fn get_authorized_entries(
        &self,
        req: Request<GetAuthorizedEntriesRequest>,
    ) -> Result<Response<GetAuthorizedEntriesResponse>, Status> {
        let agent = self.state.require_agent(&req).await?;
        let mask = req.get_ref().output_mask.as_ref();
        let entries = self
            .state
            .registry
            .authorized_entries(&agent.id)
            .iter()
            .map(|e| entry_to_proto(e, mask))
            .collect();
        Ok(Response::new(GetAuthorizedEntriesResponse { entries }))
    }

    type SyncAuthorizedEntriesStream =
        ReceiverStream<Result<SyncAuthorizedEntriesResponse, Status>>;

    async fn sync_authorized_entries(
        &self,
        req: Request<Streaming<SyncAuthorizedEntriesRequest>>,
    ) -> Result<Response<Self::SyncAuthorizedEntriesStream>, Status> {
        let agent = self.state.require_agent(&req).await?;
        let entries = self.state.registry.authorized_entries(&agent.id);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(authorized_entries::serve(
            entries,
            req.into_inner(),
            tx,
            SYNC_PAGE_SIZE,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
