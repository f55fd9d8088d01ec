//! `spire.api.server.bundle.v1.Bundle`: the server's own trust bundle (anyone may read it)
//! and federated bundles (admins write, admins and agents read). Messages follow SPIRE's
//! `pkg/server/api/bundle/v1/service.go`.

use std::sync::Arc;

use signet_common::bundle::Bundle as StoredBundle;
use signet_common::id::{self, TrustDomain};
use signet_proto::spire::api::server::bundle::v1::batch_delete_federated_bundle_request::Mode;
use signet_proto::spire::api::server::bundle::v1::bundle_server::Bundle;
use signet_proto::spire::api::server::bundle::v1::{
    AppendBundleRequest, BatchCreateFederatedBundleRequest, BatchCreateFederatedBundleResponse,
    BatchDeleteFederatedBundleRequest, BatchDeleteFederatedBundleResponse,
    BatchSetFederatedBundleRequest, BatchSetFederatedBundleResponse,
    BatchUpdateFederatedBundleRequest, BatchUpdateFederatedBundleResponse, CountBundlesRequest,
    CountBundlesResponse, GetBundleRequest, GetFederatedBundleRequest, ListFederatedBundlesRequest,
    ListFederatedBundlesResponse, PublishJwtAuthorityRequest, PublishJwtAuthorityResponse,
    PublishWitAuthorityRequest, PublishWitAuthorityResponse,
    batch_create_federated_bundle_response, batch_delete_federated_bundle_response,
    batch_set_federated_bundle_response, batch_update_federated_bundle_response,
};
use signet_proto::types;
use tonic::{Request, Response, Status};

use crate::api::entry::{check_trust_domain_token, page, with_context};
use crate::api::{ApiError, ApiState, ok_status};
use crate::datastore::StoreError;
use signet_proto::convert::bundle_to_proto;

#[cfg(test)]
mod tests;

/// The bundle service.
#[derive(Debug, Clone)]
pub struct BundleService {
    state: Arc<ApiState>,
}

impl BundleService {
    /// A service over the shared API state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }
}

/// Which batch write is being done (for SPIRE's per-verb wording).
#[derive(Debug, Clone, Copy)]
enum Write {
    Create,
    Update,
    Set,
}

impl Write {
    fn own_td_refused(self) -> ApiError {
        let verb = match self {
            Self::Create => "creating",
            Self::Update => "updating",
            Self::Set => "setting",
        };
        ApiError::BadRequest(format!(
            "{verb} a federated bundle for the server's own trust domain is not allowed"
        ))
    }
}

/// The input mask for updates (absent = every field).
fn masked(mask: Option<&types::BundleMask>, pick: fn(&types::BundleMask) -> bool) -> bool {
    mask.is_none_or(pick)
}

/// Parses a bundle from the API. As in SPIRE, callers cannot set the `tainted` flags.
fn parse_bundle(b: &types::Bundle) -> Result<StoredBundle, ApiError> {
    let mut bundle = StoredBundle::try_from(b)?;
    bundle
        .x509_authorities
        .iter_mut()
        .for_each(|a| a.tainted = false);
    bundle
        .jwt_authorities
        .iter_mut()
        .for_each(|k| k.tainted = false);
    Ok(bundle)
}

// === impl BundleService ===

impl BundleService {
    fn own(&self) -> &TrustDomain {
        &self.state.trust_domain
    }

    /// Parses a trust domain argument and refuses the server's own.
    fn federated_td(&self, name: &str, own_refused: ApiError) -> Result<TrustDomain, ApiError> {
        let td = id::parse_trust_domain(name).map_err(|e| {
            ApiError::BadRequest(format!("trust domain argument is not valid: {e}"))
        })?;
        if td == *self.own() {
            return Err(own_refused);
        }
        Ok(td)
    }

    /// Local and admin callers, and agents (SPIRE's policy for `GetFederatedBundle`).
    async fn require_admin_or_agent<T>(&self, req: &Request<T>) -> Result<(), ApiError> {
        match self.state.require_admin(req).await {
            Ok(_) => Ok(()),
            Err(ApiError::Forbidden(_)) => self.state.require_agent(req).await.map(|_| ()),
            Err(e) => Err(e),
        }
    }

    async fn write_one(
        &self,
        write: Write,
        proto: &types::Bundle,
        mask: Option<&types::BundleMask>,
    ) -> Result<StoredBundle, ApiError> {
        let td = self.federated_td(&proto.trust_domain, write.own_td_refused())?;
        let bundle =
            parse_bundle(proto).map_err(|e| with_context("failed to convert bundle", e))?;
        let store = self.state.registry.store();
        match write {
            Write::Create => match store.create_bundle(bundle).await {
                Err(StoreError::AlreadyExists(_)) => {
                    Err(ApiError::Duplicate("bundle already exists".into()))
                }
                other => other.map_err(|e| with_context("unable to create bundle", e.into())),
            },
            Write::Set => store
                .set_bundle(bundle)
                .await
                .map_err(|e| with_context("failed to set bundle", e.into())),
            Write::Update => {
                let not_found = || ApiError::Missing("bundle not found".into());
                let mut stored = store.bundle(&td).await?.ok_or_else(not_found)?;
                if masked(mask, |m| m.x509_authorities) {
                    stored.x509_authorities = bundle.x509_authorities;
                }
                if masked(mask, |m| m.jwt_authorities) {
                    stored.jwt_authorities = bundle.jwt_authorities;
                }
                if masked(mask, |m| m.refresh_hint) {
                    stored.refresh_hint = bundle.refresh_hint;
                }
                if masked(mask, |m| m.sequence_number) {
                    stored.sequence_number = bundle.sequence_number;
                }
                match store.update_bundle(stored).await {
                    Err(StoreError::NotFound(_)) => Err(not_found()),
                    other => other.map_err(|e| with_context("failed to update bundle", e.into())),
                }
            }
        }
    }

    /// Runs one batch write; announces a bundle change once if anything was written.
    async fn write_batch(
        &self,
        write: Write,
        bundles: &[types::Bundle],
        input_mask: Option<&types::BundleMask>,
        output_mask: Option<&types::BundleMask>,
    ) -> Vec<(types::Status, Option<types::Bundle>)> {
        let mut results = Vec::new();
        for b in bundles {
            results.push(match self.write_one(write, b, input_mask).await {
                Ok(stored) => (ok_status(), Some(bundle_to_proto(&stored, output_mask))),
                Err(e) => (e.to_item_status(), None),
            });
        }
        if results.iter().any(|(s, _)| s.code == 0) {
            self.state.registry.bundles_changed();
        }
        results
    }

    async fn delete_one(&self, name: &str, mode: Mode) -> Result<(), ApiError> {
        let td = self.federated_td(
            name,
            ApiError::BadRequest(
                "removing the bundle for the server trust domain is not allowed".into(),
            ),
        )?;
        let registry = &self.state.registry;
        let store = registry.store();
        if store.bundle(&td).await?.is_none() {
            return Err(ApiError::Missing("bundle not found".into()));
        }
        let ctx = |e: StoreError| with_context("failed to delete federated bundle", e.into());
        let name = td.to_string();
        let federated: Vec<_> = store
            .list_entries()
            .await
            .map_err(ctx)?
            .into_iter()
            .filter(|e| e.federates_with.contains(&name))
            .collect();
        if !federated.is_empty() {
            match mode {
                Mode::Restrict => {
                    return Err(ApiError::WrongState(format!(
                        "failed to delete federated bundle: cannot delete bundle; federated with \
                         {} registration entries",
                        federated.len()
                    )));
                }
                // SPIRE deletes the entries that federate with the bundle.
                Mode::Delete => {
                    for e in federated {
                        match registry.delete_entry(&e.id).await {
                            Ok(_) | Err(StoreError::NotFound(_)) => {}
                            Err(err) => return Err(ctx(err)),
                        }
                    }
                }
                // SPIRE keeps the entries but drops the trust domain from them.
                Mode::Dissociate => {
                    for mut e in federated {
                        e.federates_with.retain(|t| *t != name);
                        match registry.update_entry(e).await {
                            Ok(_) | Err(StoreError::NotFound(_)) => {}
                            Err(err) => return Err(ctx(err)),
                        }
                    }
                }
            }
        }
        match store.delete_bundle(&td).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(ApiError::Missing("bundle not found".into())),
            Err(e) => Err(ctx(e)),
        }
    }
}

#[tonic::async_trait]
impl Bundle for BundleService {
    async fn count_bundles(
        &self,
        req: Request<CountBundlesRequest>,
    ) -> Result<Response<CountBundlesResponse>, Status> {
        self.state.require_admin(&req).await?;
        let bundles = self
            .state
            .registry
            .store()
            .list_bundles()
            .await
            .map_err(|e| with_context("failed to count bundles", e.into()))?;
        let count = i32::try_from(bundles.len()).unwrap_or(i32::MAX);
        Ok(Response::new(CountBundlesResponse { count }))
    }

    async fn get_bundle(
        &self,
        req: Request<GetBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let bundle = self
            .state
            .registry
            .store()
            .bundle(self.own())
            .await
            .map_err(|e| with_context("failed to fetch bundle", e.into()))?
            .ok_or_else(|| ApiError::Missing("bundle not found".into()))?;
        Ok(Response::new(bundle_to_proto(
            &bundle,
            req.get_ref().output_mask.as_ref(),
        )))
    }

    async fn append_bundle(
        &self,
        req: Request<AppendBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        if req.x509_authorities.is_empty() && req.jwt_authorities.is_empty() {
            return Err(ApiError::BadRequest("no authorities to append".into()).into());
        }
        let only = |x509, jwt| types::Bundle {
            trust_domain: self.own().to_string(),
            x509_authorities: x509,
            jwt_authorities: jwt,
            ..Default::default()
        };
        let jwt = parse_bundle(&only(vec![], req.jwt_authorities))
            .map_err(|e| with_context("failed to convert JWT authority", e))?
            .jwt_authorities;
        let x509 = parse_bundle(&only(req.x509_authorities, vec![]))
            .map_err(|e| with_context("failed to convert X.509 authority", e))?
            .x509_authorities;
        let mut changed = false;
        let bundle = self
            .state
            .registry
            .store()
            .update_bundle_with(self.own(), &mut |b| {
                changed = b.merge(&x509, &jwt);
                if changed {
                    b.sequence_number += 1;
                }
                changed
            })
            .await
            .map_err(|e| with_context("failed to append bundle", e.into()))?;
        if changed {
            self.state.registry.bundles_changed();
        }
        Ok(Response::new(bundle_to_proto(
            &bundle,
            req.output_mask.as_ref(),
        )))
    }

    async fn publish_jwt_authority(
        &self,
        _req: Request<PublishJwtAuthorityRequest>,
    ) -> Result<Response<PublishJwtAuthorityResponse>, Status> {
        Err(ApiError::Unsupported("downstream servers are not supported".into()).into())
    }

    async fn publish_wit_authority(
        &self,
        _req: Request<PublishWitAuthorityRequest>,
    ) -> Result<Response<PublishWitAuthorityResponse>, Status> {
        Err(ApiError::Unsupported("WIT-SVID functionality is not yet implemented".into()).into())
    }

    async fn list_federated_bundles(
        &self,
        req: Request<ListFederatedBundlesRequest>,
    ) -> Result<Response<ListFederatedBundlesResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        check_trust_domain_token(req.page_size, &req.page_token)?;
        let mut bundles: Vec<(String, StoredBundle)> = self
            .state
            .registry
            .store()
            .list_bundles()
            .await
            .map_err(|e| with_context("failed to list bundles", e.into()))?
            .into_iter()
            .filter(|b| b.trust_domain != *self.own())
            .map(|b| (b.trust_domain.to_string(), b))
            .collect();
        bundles.sort_by(|a, b| a.0.cmp(&b.0));
        let (page, next_page_token) =
            page(bundles, |(name, _)| name, req.page_size, &req.page_token);
        Ok(Response::new(ListFederatedBundlesResponse {
            bundles: page
                .iter()
                .map(|(_, b)| bundle_to_proto(b, req.output_mask.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_federated_bundle(
        &self,
        req: Request<GetFederatedBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        self.require_admin_or_agent(&req).await?;
        let req = req.into_inner();
        let td = self.federated_td(
            &req.trust_domain,
            ApiError::BadRequest(
                "getting a federated bundle for the server's own trust domain is not allowed"
                    .into(),
            ),
        )?;
        let bundle = self
            .state
            .registry
            .store()
            .bundle(&td)
            .await
            .map_err(|e| with_context("failed to fetch bundle", e.into()))?
            .ok_or_else(|| ApiError::Missing("bundle not found".into()))?;
        Ok(Response::new(bundle_to_proto(
            &bundle,
            req.output_mask.as_ref(),
        )))
    }

    async fn batch_create_federated_bundle(
        &self,
        req: Request<BatchCreateFederatedBundleRequest>,
    ) -> Result<Response<BatchCreateFederatedBundleResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let results = self
            .write_batch(Write::Create, &req.bundle, None, req.output_mask.as_ref())
            .await
            .into_iter()
            .map(
                |(status, bundle)| batch_create_federated_bundle_response::Result {
                    status: Some(status),
                    bundle,
                },
            )
            .collect();
        Ok(Response::new(BatchCreateFederatedBundleResponse {
            results,
        }))
    }

    async fn batch_update_federated_bundle(
        &self,
        req: Request<BatchUpdateFederatedBundleRequest>,
    ) -> Result<Response<BatchUpdateFederatedBundleResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let results = self
            .write_batch(
                Write::Update,
                &req.bundle,
                req.input_mask.as_ref(),
                req.output_mask.as_ref(),
            )
            .await
            .into_iter()
            .map(
                |(status, bundle)| batch_update_federated_bundle_response::Result {
                    status: Some(status),
                    bundle,
                },
            )
            .collect();
        Ok(Response::new(BatchUpdateFederatedBundleResponse {
            results,
        }))
    }

    async fn batch_set_federated_bundle(
        &self,
        req: Request<BatchSetFederatedBundleRequest>,
    ) -> Result<Response<BatchSetFederatedBundleResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let results = self
            .write_batch(Write::Set, &req.bundle, None, req.output_mask.as_ref())
            .await
            .into_iter()
            .map(
                |(status, bundle)| batch_set_federated_bundle_response::Result {
                    status: Some(status),
                    bundle,
                },
            )
            .collect();
        Ok(Response::new(BatchSetFederatedBundleResponse { results }))
    }

    async fn batch_delete_federated_bundle(
        &self,
        req: Request<BatchDeleteFederatedBundleRequest>,
    ) -> Result<Response<BatchDeleteFederatedBundleResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let mode = Mode::try_from(req.mode).map_err(|_| {
            ApiError::BadRequest(format!(
                "failed to parse deletion mode: unhandled delete mode {:?}",
                req.mode
            ))
        })?;
        let mut results = Vec::new();
        for td in req.trust_domains {
            results.push(batch_delete_federated_bundle_response::Result {
                status: Some(match self.delete_one(&td, mode).await {
                    Ok(()) => ok_status(),
                    Err(e) => e.to_item_status(),
                }),
                trust_domain: td,
            });
        }
        if results
            .iter()
            .any(|r| r.status.as_ref().is_some_and(|s| s.code == 0))
        {
            self.state.registry.bundles_changed();
        }
        Ok(Response::new(BatchDeleteFederatedBundleResponse {
            results,
        }))
    }
}
