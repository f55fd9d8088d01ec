//! An in-memory Agent API on a Unix socket in a temp dir: a map of attested agents that
//! can be listed, shown, banned and evicted, and a join-token minter that records requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use signet_proto::spire::api::server::agent::v1::agent_server::{Agent, AgentServer};
use signet_proto::spire::api::server::agent::v1::*;
use signet_proto::types;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// What the fake holds and saw.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Agents by SPIFFE ID path.
    pub(crate) agents: BTreeMap<String, types::Agent>,
    pub(crate) last_list_filter: Option<list_agents_request::Filter>,
    pub(crate) last_token_request: Option<CreateJoinTokenRequest>,
}

#[derive(Debug, Clone, Default)]
struct FakeAgent(Arc<Mutex<State>>);

/// A running fake; dropping it stops the server and removes the socket.
pub(crate) struct FakeAgentServer {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) socket: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl FakeAgentServer {
    /// A fake holding `agents`.
    pub(crate) async fn start(agents: Vec<types::Agent>) -> Self {
        let fake = FakeAgent::default();
        for a in agents {
            let path = a.id.as_ref().map(|id| id.path.clone()).unwrap_or_default();
            fake.0.lock().unwrap().agents.insert(path, a);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let state = fake.0.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServer::new(fake))
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
}

fn path_of(id: Option<types::Spiffeid>) -> String {
    id.map(|id| id.path).unwrap_or_default()
}

#[tonic::async_trait]
impl Agent for FakeAgent {
    async fn count_agents(
        &self,
        _: Request<CountAgentsRequest>,
    ) -> Result<Response<CountAgentsResponse>, Status> {
        let n = self.0.lock().unwrap().agents.len();
        Ok(Response::new(CountAgentsResponse {
            count: i32::try_from(n).unwrap(),
        }))
    }

    async fn list_agents(
        &self,
        req: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let mut state = self.0.lock().unwrap();
        state.last_list_filter = req.into_inner().filter;
        Ok(Response::new(ListAgentsResponse {
            agents: state.agents.values().cloned().collect(),
            next_page_token: String::new(),
        }))
    }

    async fn get_agent(
        &self,
        req: Request<GetAgentRequest>,
    ) -> Result<Response<types::Agent>, Status> {
        let path = path_of(req.into_inner().id);
        match self.0.lock().unwrap().agents.get(&path) {
            Some(a) => Ok(Response::new(a.clone())),
            None => Err(Status::not_found("agent not found")),
        }
    }

    async fn delete_agent(&self, req: Request<DeleteAgentRequest>) -> Result<Response<()>, Status> {
        let path = path_of(req.into_inner().id);
        match self.0.lock().unwrap().agents.remove(&path) {
            Some(_) => Ok(Response::new(())),
            None => Err(Status::not_found("agent not found")),
        }
    }

    async fn ban_agent(&self, req: Request<BanAgentRequest>) -> Result<Response<()>, Status> {
        let path = path_of(req.into_inner().id);
        match self.0.lock().unwrap().agents.get_mut(&path) {
            Some(a) => {
                a.banned = true;
                a.x509svid_serial_number.clear();
                Ok(Response::new(()))
            }
            None => Err(Status::not_found("agent not found")),
        }
    }

    type AttestAgentStream = tokio_stream::Empty<Result<AttestAgentResponse, Status>>;

    async fn attest_agent(
        &self,
        _: Request<tonic::Streaming<AttestAgentRequest>>,
    ) -> Result<Response<Self::AttestAgentStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn renew_agent(
        &self,
        _: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn create_join_token(
        &self,
        req: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<types::JoinToken>, Status> {
        let req = req.into_inner();
        let expires_at = i64::from(req.ttl) + 1_700_000_000;
        self.0.lock().unwrap().last_token_request = Some(req);
        Ok(Response::new(types::JoinToken {
            value: "8c2a3a3e-1d8f-4a0e-9d38-2b8f0f2b1c11".into(),
            expires_at,
        }))
    }

    async fn post_status(
        &self,
        _: Request<PostStatusRequest>,
    ) -> Result<Response<PostStatusResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}
