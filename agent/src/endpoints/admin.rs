//! The agent's admin socket (`admin_socket_path`): a local HTTP API for the operator, never
//! for workloads. The socket is 0600 in a directory created 0700, so only its owner (root,
//! normally) can connect. `POST /v1/doctor` takes a [`DoctorRequest`] as JSON and answers
//! with the [`Report`](signet_common::doctor::Report).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::IncomingStream;
use signet_common::uds;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::attestor::workload::Peer;
use crate::doctor::{Doctor, DoctorRequest};

/// The doctor endpoint's path.
pub const DOCTOR_PATH: &str = "/v1/doctor";

/// Binds the admin socket: 0600, parent directory created 0700 if missing.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let access = uds::Access {
        socket_mode: 0o600,
        new_parent_mode: Some(0o700),
    };
    Ok(uds::bind(path, access)?)
}

/// The caller's credentials (none if they could not be read).
#[derive(Debug, Clone)]
struct Caller(Option<Peer>);

impl Connected<IncomingStream<'_, UnixListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self(Peer::of_socket(stream.io()).ok())
    }
}

/// Serves the admin API on `listener` until `shutdown` turns true.
pub fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: UnixListener,
    doctor: Doctor,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route(DOCTOR_PATH, post(run_doctor))
        .with_state(Arc::new(doctor));
    tasks.spawn(async move {
        tracing::info!(path = ?listener.local_addr().ok(), "Starting agent admin API");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<Caller>(),
        )
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
        .context("agent admin API failed")
    });
}

async fn run_doctor(
    State(doctor): State<Arc<Doctor>>,
    ConnectInfo(caller): ConnectInfo<Caller>,
    body: String,
) -> Response {
    let req: DoctorRequest = match serde_json::from_str(&body) {
        Ok(req) => req,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid doctor request: {e}"),
            )
                .into_response();
        }
    };
    tracing::info!(?req, "Running doctor");
    let report = doctor.run(&req, caller.0.as_ref()).await;
    match serde_json::to_string(&report) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
