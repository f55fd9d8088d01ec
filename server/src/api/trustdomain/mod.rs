//! `spire.api.server.trustdomain.v1.TrustDomain`: federation relationships with foreign
//! trust domains (local and admin callers only), as SPIRE's
//! `pkg/server/api/trustdomain/v1/service.go` serves them. Dynamic relationships live in the
//! store; static ones (config file) are listed only when asked for and cannot be changed
//! through the API. Every change wakes the refreshers.

use std::sync::Arc;

use signet_common::bundle::Bundle as StoredBundle;
use signet_common::id::{self, TrustDomain};
use signet_proto::convert::bundle_to_proto;
use signet_proto::spire::api::server::trustdomain::v1::trust_domain_server::TrustDomain as TrustDomainApi;
use signet_proto::spire::api::server::trustdomain::v1::{
    BatchCreateFederationRelationshipRequest, BatchCreateFederationRelationshipResponse,
    BatchDeleteFederationRelationshipRequest, BatchDeleteFederationRelationshipResponse,
    BatchUpdateFederationRelationshipRequest, BatchUpdateFederationRelationshipResponse,
    GetFederationRelationshipRequest, ListFederationRelationshipsRequest,
    ListFederationRelationshipsResponse, RefreshBundleRequest,
    batch_create_federation_relationship_response as create_resp,
    batch_delete_federation_relationship_response as delete_resp,
    batch_update_federation_relationship_response as update_resp,
};
use signet_proto::types::{self, federation_relationship::BundleEndpointProfile as Profile};
use tonic::{Request, Response, Status};

use crate::api::entry::{check_trust_domain_token, page, with_context};
use crate::api::{ApiError, ApiState, ok_status};
use crate::datastore::StoreError;
use crate::federation::manager::Federation;
use crate::federation::{EndpointProfile, Relationship, check_endpoint_url};

/// The trust domain service.
#[derive(Debug, Clone)]
pub struct TrustDomainService {
    state: Arc<ApiState>,
    federation: Arc<Federation>,
}

impl TrustDomainService {
    /// A service over the shared API state and the server's relationships.
    pub fn new(state: Arc<ApiState>, federation: Arc<Federation>) -> Self {
        Self { state, federation }
    }
}

/// A relationship as the API carries it, checked.
struct Parsed {
    rel: Relationship,
    bundle: Option<StoredBundle>,
}

fn parse_td(name: &str) -> Result<TrustDomain, ApiError> {
    id::parse_trust_domain(name)
        .map_err(|e| ApiError::BadRequest(format!("failed to parse trust domain: {e}")))
}

/// Converts and checks a relationship from the API (SPIRE's `ProtoToFederationRelationship`
/// plus the server's own trust domain refused).
fn parse(own: &TrustDomain, fr: &types::FederationRelationship) -> Result<Parsed, ApiError> {
    let bad = |msg: String| {
        ApiError::BadRequest(msg).context("failed to convert federation relationship")
    };
    let td = parse_td(&fr.trust_domain)
        .map_err(|e| e.context("failed to convert federation relationship"))?;
    if td == *own {
        return Err(bad(format!(
            "{td} is the server's own trust domain: a server cannot federate with itself"
        )));
    }
    check_endpoint_url(&fr.bundle_endpoint_url).map_err(bad)?;
    let profile = match &fr.bundle_endpoint_profile {
        Some(Profile::HttpsWeb(_)) => EndpointProfile::HttpsWeb,
        Some(Profile::HttpsSpiffe(p)) => EndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: id::parse_id(&p.endpoint_spiffe_id)
                .map_err(|e| bad(format!("failed to parse endpoint SPIFFE ID: {e}")))?,
        },
        None => return Err(bad("unsupported bundle endpoint profile type".into())),
    };
    let bundle = match &fr.trust_domain_bundle {
        Some(b) => {
            let mut bundle = StoredBundle::try_from(b)
                .map_err(|e| bad(format!("failed to parse trust domain bundle: {e}")))?;
            // The bundle is the relationship's trust domain's or, for an `https_spiffe`
            // endpoint in another trust domain, that one's (SPIRE's CLI sends either).
            let endpoint_td = match &profile {
                EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                    Some(endpoint_spiffe_id.trust_domain())
                }
                EndpointProfile::HttpsWeb => None,
            };
            if bundle.trust_domain == *own
                || (bundle.trust_domain != td && Some(&bundle.trust_domain) != endpoint_td)
            {
                return Err(bad(format!(
                    "trust domain bundle ({}) is neither for {td} nor for the endpoint's trust domain",
                    bundle.trust_domain
                )));
            }
            bundle
                .x509_authorities
                .iter_mut()
                .for_each(|a| a.tainted = false);
            bundle
                .jwt_authorities
                .iter_mut()
                .for_each(|k| k.tainted = false);
            Some(bundle)
        }
        None => None,
    };
    let rel = Relationship::new(own, td, fr.bundle_endpoint_url.clone(), profile).map_err(bad)?;
    Ok(Parsed { rel, bundle })
}

/// The relationship as the API returns it, fields per `mask` (absent = all).
fn to_proto(
    rel: &Relationship,
    bundle: Option<&StoredBundle>,
    mask: Option<&types::FederationRelationshipMask>,
) -> types::FederationRelationship {
    let all = types::FederationRelationshipMask {
        bundle_endpoint_url: true,
        bundle_endpoint_profile: true,
        trust_domain_bundle: true,
    };
    let mask = mask.unwrap_or(&all);
    types::FederationRelationship {
        trust_domain: rel.trust_domain.to_string(),
        bundle_endpoint_url: if mask.bundle_endpoint_url {
            rel.bundle_endpoint_url.clone()
        } else {
            String::new()
        },
        bundle_endpoint_profile: mask
            .bundle_endpoint_profile
            .then(|| profile_to_proto(&rel.profile)),
        trust_domain_bundle: bundle
            .filter(|_| mask.trust_domain_bundle)
            .map(|b| bundle_to_proto(b, None)),
    }
}

fn profile_to_proto(p: &EndpointProfile) -> Profile {
    match p {
        EndpointProfile::HttpsWeb => Profile::HttpsWeb(types::HttpsWebProfile {}),
        EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
            Profile::HttpsSpiffe(types::HttpsspiffeProfile {
                endpoint_spiffe_id: endpoint_spiffe_id.to_string(),
            })
        }
    }
}

// === impl TrustDomainService ===

impl TrustDomainService {
    fn own(&self) -> &TrustDomain {
        self.federation.own()
    }

    async fn with_bundle(
        &self,
        rel: &Relationship,
        mask: Option<&types::FederationRelationshipMask>,
    ) -> Result<types::FederationRelationship, ApiError> {
        let bundle = if mask.is_none_or(|m| m.trust_domain_bundle) {
            self.state
                .registry
                .store()
                .bundle(&rel.trust_domain)
                .await?
        } else {
            None
        };
        Ok(to_proto(rel, bundle.as_ref(), mask))
    }

    fn refuse_static(&self, td: &TrustDomain, verb: &str) -> Result<(), ApiError> {
        if self.federation.is_static(td) {
            return Err(ApiError::WrongState(format!(
                "cannot {verb} the federation relationship with {td}: it is set in the server's config file"
            )));
        }
        Ok(())
    }

    async fn store_bundle(&self, bundle: Option<StoredBundle>) -> Result<(), ApiError> {
        if let Some(b) = bundle {
            self.state
                .registry
                .store()
                .set_bundle(b)
                .await
                .map_err(|e| with_context("failed to set trust domain bundle", e.into()))?;
            self.state.registry.bundles_changed();
        }
        Ok(())
    }

    async fn create_one(
        &self,
        fr: &types::FederationRelationship,
        mask: Option<&types::FederationRelationshipMask>,
    ) -> Result<types::FederationRelationship, ApiError> {
        let Parsed { rel, bundle } = parse(self.own(), fr)?;
        if self.federation.is_static(&rel.trust_domain) {
            return Err(ApiError::Duplicate(format!(
                "a federation relationship with {} is set in the server's config file",
                rel.trust_domain
            )));
        }
        let rel = match self.state.registry.store().create_federation(rel).await {
            Err(StoreError::AlreadyExists(_)) => {
                return Err(ApiError::Duplicate(
                    "failed to create federation relationship: federation relationship already exists".into(),
                ));
            }
            other => other
                .map_err(|e| with_context("failed to create federation relationship", e.into()))?,
        };
        self.store_bundle(bundle).await?;
        tracing::info!(trust_domain = %rel.trust_domain, url = %rel.bundle_endpoint_url, profile = rel.profile.name(), "Federation relationship created");
        self.with_bundle(&rel, mask).await
    }

    async fn update_one(
        &self,
        fr: &types::FederationRelationship,
        input: Option<&types::FederationRelationshipMask>,
        output: Option<&types::FederationRelationshipMask>,
    ) -> Result<types::FederationRelationship, ApiError> {
        let td = parse_td(&fr.trust_domain)
            .map_err(|e| e.context("failed to convert federation relationship"))?;
        self.refuse_static(&td, "update")?;
        let store = self.state.registry.store();
        let not_found = || ApiError::Missing("federation relationship does not exist".into());
        let stored = store.federation(&td).await?.ok_or_else(not_found)?;
        // Fields outside the input mask keep their stored values.
        let url_in = input.is_none_or(|m| m.bundle_endpoint_url);
        let profile_in = input.is_none_or(|m| m.bundle_endpoint_profile);
        let bundle_in = input.is_none_or(|m| m.trust_domain_bundle);
        let merged = types::FederationRelationship {
            trust_domain: fr.trust_domain.clone(),
            bundle_endpoint_url: if url_in {
                fr.bundle_endpoint_url.clone()
            } else {
                stored.bundle_endpoint_url.clone()
            },
            bundle_endpoint_profile: if profile_in {
                fr.bundle_endpoint_profile.clone()
            } else {
                Some(profile_to_proto(&stored.profile))
            },
            trust_domain_bundle: if bundle_in {
                fr.trust_domain_bundle.clone()
            } else {
                None
            },
        };
        let Parsed { rel, bundle } = parse(self.own(), &merged)?;
        let rel = match store.update_federation(rel).await {
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            other => other
                .map_err(|e| with_context("failed to update federation relationship", e.into()))?,
        };
        self.store_bundle(bundle).await?;
        tracing::info!(trust_domain = %rel.trust_domain, url = %rel.bundle_endpoint_url, profile = rel.profile.name(), "Federation relationship updated");
        self.with_bundle(&rel, output).await
    }

    async fn delete_one(&self, name: &str) -> Result<TrustDomain, ApiError> {
        let td = parse_td(name)?;
        self.refuse_static(&td, "delete")?;
        match self.state.registry.store().delete_federation(&td).await {
            Ok(_) => {
                tracing::info!(trust_domain = %td, "Federation relationship deleted");
                Ok(td)
            }
            Err(StoreError::NotFound(_)) => Err(ApiError::Missing(
                "federation relationship not found".into(),
            )),
            Err(e) => Err(with_context(
                "failed to delete federation relationship",
                e.into(),
            )),
        }
    }
}

#[tonic::async_trait]
impl TrustDomainApi for TrustDomainService {
    async fn list_federation_relationships(
        &self,
        req: Request<ListFederationRelationshipsRequest>,
    ) -> Result<Response<ListFederationRelationshipsResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        check_trust_domain_token(req.page_size, &req.page_token)?;
        let rels = if req.include_static {
            self.federation.relationships().await
        } else {
            self.state.registry.store().list_federations().await
        }
        .map_err(|e| with_context("failed to list federation relationships", e.into()))?;
        let keyed: Vec<(String, Relationship)> = rels
            .into_iter()
            .map(|r| (r.trust_domain.to_string(), r))
            .collect();
        let (page, next_page_token) = page(keyed, |(name, _)| name, req.page_size, &req.page_token);
        let mut out = Vec::with_capacity(page.len());
        for (_, rel) in &page {
            out.push(self.with_bundle(rel, req.output_mask.as_ref()).await?);
        }
        Ok(Response::new(ListFederationRelationshipsResponse {
            federation_relationships: out,
            next_page_token,
        }))
    }

    async fn get_federation_relationship(
        &self,
        req: Request<GetFederationRelationshipRequest>,
    ) -> Result<Response<types::FederationRelationship>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let td = parse_td(&req.trust_domain)?;
        let rel = if req.include_static {
            self.federation.relationship(&td).await
        } else {
            self.state.registry.store().federation(&td).await
        }
        .map_err(|e| with_context("failed to fetch federation relationship", e.into()))?
        .ok_or_else(|| ApiError::Missing("federation relationship does not exist".into()))?;
        Ok(Response::new(
            self.with_bundle(&rel, req.output_mask.as_ref()).await?,
        ))
    }

    async fn batch_create_federation_relationship(
        &self,
        req: Request<BatchCreateFederationRelationshipRequest>,
    ) -> Result<Response<BatchCreateFederationRelationshipResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let mut results = Vec::new();
        for fr in &req.federation_relationships {
            results.push(match self.create_one(fr, req.output_mask.as_ref()).await {
                Ok(created) => create_resp::Result {
                    status: Some(ok_status()),
                    federation_relationship: Some(created),
                },
                Err(e) => create_resp::Result {
                    status: Some(e.to_item_status()),
                    federation_relationship: None,
                },
            });
        }
        self.federation.relationships_changed();
        Ok(Response::new(BatchCreateFederationRelationshipResponse {
            results,
        }))
    }

    async fn batch_update_federation_relationship(
        &self,
        req: Request<BatchUpdateFederationRelationshipRequest>,
    ) -> Result<Response<BatchUpdateFederationRelationshipResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let mut results = Vec::new();
        for fr in &req.federation_relationships {
            results.push(
                match self
                    .update_one(fr, req.input_mask.as_ref(), req.output_mask.as_ref())
                    .await
                {
                    Ok(updated) => update_resp::Result {
                        status: Some(ok_status()),
                        federation_relationship: Some(updated),
                    },
                    Err(e) => update_resp::Result {
                        status: Some(e.to_item_status()),
                        federation_relationship: None,
                    },
                },
            );
        }
        self.federation.relationships_changed();
        Ok(Response::new(BatchUpdateFederationRelationshipResponse {
            results,
        }))
    }

    async fn batch_delete_federation_relationship(
        &self,
        req: Request<BatchDeleteFederationRelationshipRequest>,
    ) -> Result<Response<BatchDeleteFederationRelationshipResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let mut results = Vec::new();
        for name in &req.trust_domains {
            results.push(match self.delete_one(name).await {
                Ok(td) => delete_resp::Result {
                    status: Some(ok_status()),
                    trust_domain: td.to_string(),
                },
                Err(e) => delete_resp::Result {
                    status: Some(e.to_item_status()),
                    trust_domain: name.clone(),
                },
            });
        }
        self.federation.relationships_changed();
        Ok(Response::new(BatchDeleteFederationRelationshipResponse {
            results,
        }))
    }

    async fn refresh_bundle(
        &self,
        req: Request<RefreshBundleRequest>,
    ) -> Result<Response<()>, Status> {
        self.state.require_admin(&req).await?;
        let td = parse_td(&req.get_ref().trust_domain)?;
        let rel = self
            .federation
            .relationship(&td)
            .await
            .map_err(|e| with_context("failed to refresh bundle", e.into()))?
            .ok_or_else(|| ApiError::Missing("no relationship with that trust domain".into()))?;
        self.federation
            .refresh(&rel)
            .await
            .map_err(|e| ApiError::WrongState(e.to_string()).context("failed to refresh bundle"))?;
        Ok(Response::new(()))
    }
}
