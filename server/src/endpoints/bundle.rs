//! The SPIFFE bundle endpoint (`federation { bundle_endpoint {} }`): answers `GET` on any path
//! with the trust domain's bundle in the SPIFFE format, read from the store per request (so
//! a CA rotation shows at once), with the configured `spiffe_refresh_hint`. Other methods get
//! 405. With `https_spiffe` the listener presents the server's SVID; with `https_web`, a
//! certificate from files.

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use signet_common::bundle;
use signet_common::id::TrustDomain;

use crate::datastore::DataStore;

/// What the handler needs.
#[derive(Debug, Clone)]
struct EndpointState {
    trust_domain: TrustDomain,
    store: Arc<dyn DataStore>,
    refresh_hint: i64,
}

/// The bundle endpoint's routes.
pub fn router(
    trust_domain: TrustDomain,
    store: Arc<dyn DataStore>,
    refresh_hint: std::time::Duration,
) -> axum::Router {
    let state = EndpointState {
        trust_domain,
        store,
        refresh_hint: i64::try_from(refresh_hint.as_secs()).unwrap_or(i64::MAX),
    };
    axum::Router::new().fallback(move |method: Method| {
        let state = state.clone();
        async move { serve_bundle(&state, &method).await }
    })
}

async fn serve_bundle(state: &EndpointState, method: &Method) -> Response {
    if method != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "method not allowed\n",
        )
            .into_response();
    }
    match state.store.bundle(&state.trust_domain).await {
        Ok(Some(mut b)) => {
            b.refresh_hint = state.refresh_hint;
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bundle::to_spiffe_json(&b),
            )
                .into_response()
        }
        Ok(None) => {
            tracing::warn!(trust_domain = %state.trust_domain, "Bundle endpoint: no bundle stored");
            (StatusCode::SERVICE_UNAVAILABLE, "no bundle\n").into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "Bundle endpoint: cannot read the bundle");
            (StatusCode::SERVICE_UNAVAILABLE, "bundle unavailable\n").into_response()
        }
    }
}

/// Starts the bundle endpoint of `config` (refusing ACME); returns where it listens.
pub async fn start(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    config: &crate::config::BundleEndpointConfig,
    trust_domain: TrustDomain,
    store: Arc<dyn DataStore>,
    identity: Arc<super::tls::ServerIdentity>,
    clock: Arc<dyn signet_common::clock::Clock>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    use super::https;
    use crate::config::ServingProfile;
    let certs: Arc<dyn rustls::server::ResolvesServerCert> = match &config.profile {
        ServingProfile::HttpsSpiffe => identity,
        ServingProfile::HttpsWebFiles {
            cert_file_path,
            key_file_path,
            file_sync_interval,
        } => {
            let files = https::CertFiles::load(cert_file_path, key_file_path)?;
            files.watch(tasks, *file_sync_interval, shutdown.clone());
            files
        }
        ServingProfile::Acme => {
            anyhow::bail!("the bundle endpoint's ACME profile is not supported")
        }
    };
    let tls = https::server_config(certs, clock)?;
    let listener = https::bind("bundle endpoint", &config.address, config.port).await?;
    let app = router(trust_domain, store, config.refresh_hint);
    let addr = https::serve(tasks, "bundle endpoint", listener, tls, app, shutdown)?;
    tracing::info!(address = %addr, profile = match config.profile {
        ServingProfile::HttpsSpiffe => "https_spiffe",
        _ => "https_web",
    }, "Serving the bundle endpoint");
    Ok(addr)
}
