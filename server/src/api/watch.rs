//! `signet.sync.v1.Sync/Watch`: the change push. An agent keeps this stream open; it gets an
//! event at once and then whenever its authorized entries or the bundles change, and then
//! fetches what changed with SyncAuthorizedEntries / GetBundle. The stream ends with
//! PermissionDenied as soon as the agent is banned or evicted.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use signet_proto::signet::sync::v1::sync_server::Sync;
use signet_proto::signet::sync::v1::{WatchEvent, WatchRequest};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::{ApiError, ApiState};

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

/// The Sync service.
#[derive(Debug)]
pub struct SyncService {
    state: Arc<ApiState>,
    shutdown: watch::Receiver<bool>,
}

impl SyncService {
    /// The service; open streams end (Unavailable) when `shutdown` turns true, so that a
    /// graceful stop does not wait for agents to hang up.
    pub fn new(state: Arc<ApiState>, shutdown: watch::Receiver<bool>) -> Self {
        Self { state, shutdown }
    }
}

#[tonic::async_trait]
impl Sync for SyncService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let agent = self.state.require_agent(&req).await?;
        let mut entries = self.state.registry.subscribe_agent(&agent.id);
        let mut bundles = self.state.registry.subscribe_bundles();
        let (tx, rx) = mpsc::channel(4);
        let state = Arc::clone(&self.state);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _connected = state.metrics.agent_connected();
            let mut changed_at: Option<Instant> = None;
            loop {
                let event = WatchEvent {
                    entries_revision: *entries.borrow_and_update(),
                    bundles_revision: *bundles.borrow_and_update(),
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                state.metrics.pushed(changed_at.map(|t| t.elapsed()));
                tokio::select! {
                    changed = entries.changed() => if changed.is_err() { return },
                    changed = bundles.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                        let _ = tx.send(Err(ApiError::ShuttingDown.into())).await;
                        return;
                    }
                }
                changed_at = Some(Instant::now());
                match state.registry.store().node(&agent.id).await {
                    Ok(Some(node)) if !node.is_banned() => {}
                    Ok(_) => {
                        let err = ApiError::Forbidden(format!(
                            "agent {} is banned or no longer attested",
                            agent.id
                        ));
                        let _ = tx.send(Err(err.into())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
