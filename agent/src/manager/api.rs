//! What the manager needs from the server, as a narrow consumer-side interface (SPIRE's
//! manager takes a `client.Client` the same way): the real [`ServerClient`] in production, an
//! in-process fake in the manager's tests.

use std::fmt::Debug;
use std::sync::Arc;

use futures::stream::BoxStream;
use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::TrustDomain;
use tokio_stream::StreamExt;

use crate::client::{ClientError, JwtSvid, Known, ServerClient};

/// One result per requested SVID: its chain (leaf first) or why the server refused it.
pub type X509Results = Vec<Result<Vec<Vec<u8>>, ClientError>>;

/// The server calls the manager makes.
#[async_trait::async_trait]
pub trait ServerApi: Send + Sync + Debug {
    /// Every entry the agent is authorized for, ordered by ID (unchanged ones may be the
    /// `known` Arcs).
    async fn authorized_entries(
        &self,
        known: &Known,
    ) -> Result<Vec<Arc<RegistrationEntry>>, ClientError>;

    /// The own trust domain's bundle.
    async fn bundle(&self) -> Result<Bundle, ClientError>;

    /// A federated trust domain's bundle.
    async fn federated_bundle(&self, td: &TrustDomain) -> Result<Bundle, ClientError>;

    /// X509-SVIDs for `(entry ID, CSR)` pairs, one result each, in order.
    async fn new_x509_svids(
        &self,
        params: Vec<(String, Vec<u8>)>,
    ) -> Result<X509Results, ClientError>;

    /// A JWT-SVID for an entry.
    async fn new_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<JwtSvid, ClientError>;

    /// The change push: an item at once and whenever something the agent may use changed.
    async fn watch(&self) -> Result<BoxStream<'static, Result<(), ClientError>>, ClientError>;
}

#[async_trait::async_trait]
impl ServerApi for ServerClient {
    async fn authorized_entries(
        &self,
        known: &Known,
    ) -> Result<Vec<Arc<RegistrationEntry>>, ClientError> {
        ServerClient::authorized_entries(self, known).await
    }

    async fn bundle(&self) -> Result<Bundle, ClientError> {
        ServerClient::bundle(self).await
    }

    async fn federated_bundle(&self, td: &TrustDomain) -> Result<Bundle, ClientError> {
        ServerClient::federated_bundle(self, td).await
    }

    async fn new_x509_svids(
        &self,
        params: Vec<(String, Vec<u8>)>,
    ) -> Result<X509Results, ClientError> {
        ServerClient::new_x509_svids(self, params).await
    }

    async fn new_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<JwtSvid, ClientError> {
        ServerClient::new_jwt_svid(self, entry_id, audience).await
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<(), ClientError>>, ClientError> {
        let stream = ServerClient::watch(self).await?;
        Ok(Box::pin(
            stream.map(|item| item.map(|_| ()).map_err(ClientError::Status)),
        ))
    }
}
