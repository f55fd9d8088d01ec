//! Built-in OIDC discovery (`server.oidc_discovery {}`; SPIRE needs its separate
//! `oidc-discovery-provider`): `/.well-known/openid-configuration` and `/keys` over HTTPS,
//! so that cloud providers and any OIDC relying party can verify JWT-SVIDs. `/keys` is read
//! from the stored bundle on every request, so it follows JWT key rotation (a prepared key is
//! published before it signs). The certificate files are re-read when they change.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use signet_common::bundle::to_jwks;
use signet_common::clock::Clock;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiState;
use crate::config::OidcDiscoveryConfig;
use crate::endpoints::https::{self, CertFiles};

const WHAT: &str = "OIDC discovery listener";
/// Relying parties may cache `/keys` this long; a new key is published in the bundle well
/// before it signs (at half the previous key's life), so they see it in time.
const KEYS_MAX_AGE: &str = "max-age=60";

/// Binds and serves the discovery document and the JWKS until `shutdown`; returns the bound
/// address. Fails naming the file when the certificate or key does not load.
pub async fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &OidcDiscoveryConfig,
    state: Arc<ApiState>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let certs = CertFiles::load(&config.cert_file, &config.key_file)?;
    certs.watch(tasks, config.file_sync_interval, shutdown.clone());
    let tls = https::server_config(certs, clock)?;
    let listener = https::bind(WHAT, &config.address, config.port).await?;
    let addr = https::serve(tasks, WHAT, listener, tls, router(config, state), shutdown)?;
    tracing::info!(address = %addr, issuer = %config.issuer, "Serving OIDC discovery");
    Ok(addr)
}

fn router(config: &OidcDiscoveryConfig, state: Arc<ApiState>) -> Router {
    let document: Arc<str> = discovery_document(config).into();
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let body = Arc::clone(&document);
                async move { json(body.to_string(), None) }
            }),
        )
        .route(
            "/keys",
            get(move || {
                let state = Arc::clone(&state);
                async move { keys(&state).await }
            }),
        )
}

/// The discovery document (OpenID Connect Discovery 1.0 §3), as SPIRE's provider writes it.
fn discovery_document(config: &OidcDiscoveryConfig) -> String {
    serde_json::json!({
        "issuer": config.issuer,
        "jwks_uri": config.jwks_uri(),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384"],
    })
    .to_string()
}

async fn keys(state: &ApiState) -> Response {
    match state.registry.store().bundle(&state.trust_domain).await {
        Ok(Some(bundle)) => json(to_jwks(&bundle), Some(KEYS_MAX_AGE)),
        Ok(None) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(error) => {
            tracing::warn!(%error, "Cannot read the bundle for /keys");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn json(body: String, cache: Option<&'static str>) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(cache) = cache {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static(cache),
        );
    }
    resp
}
