//! The KV service on the [`raft_node`] driver: [`KvService`] as a [`raft_node::Service`], and
//! [`KvHandler`], which serves the clients of a QUIC endpoint through a running driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{counter, histogram};
use raft_core::{Action, PersistUpdate, RaftNode};
use raft_node::NodeClient;
use raft_transport_quic::RequestHandler;

use crate::codec;
use crate::protocol::{ClientRequest, KvError, Reply, RequestId};
use crate::service::KvService;

impl raft_node::Service for KvService {
    type Request = ClientRequest;
    type Reply = Reply;

    fn tick(&mut self, now_ms: u64) {
        KvService::tick(self, now_ms);
    }

    fn handle_request(
        &mut self,
        raft: &mut RaftNode,
        now_ms: u64,
        id: RequestId,
        request: ClientRequest,
    ) {
        KvService::handle_request(self, raft, now_ms, id, request);
    }

    fn persisting(&mut self, update: &PersistUpdate) {
        KvService::persisting(self, update);
    }

    fn apply(&mut self, _raft: &mut RaftNode, action: Action) {
        self.run(action);
    }

    fn settle(&mut self, raft: &mut RaftNode) {
        KvService::settle(self, raft);
    }

    fn take_replies(&mut self) -> Vec<(RequestId, Reply)> {
        KvService::take_replies(self)
    }
}

/// Serves the KV protocol to the clients of a QUIC endpoint: decodes each request, hands it to
/// the driver, and encodes the answer. A request that cannot be decoded is answered with
/// [`KvError::Codec`]; one the driver cannot answer because it stopped, with
/// [`KvError::Unavailable`] (the client retries elsewhere).
///
/// Metrics: `kv_requests_total{kind}`, `kv_request_errors_total{kind}` (answers that are
/// errors) and `kv_request_seconds{kind}`, with `kind` one of `get`, `write`, `register`,
/// `keepalive`, `status`, `undecodable`.
///
/// The endpoint must exist before the driver (the driver sends through it), and the handler
/// before the endpoint: so a handler starts detached, answering [`KvError::Unavailable`], and
/// serves once [`attach`](Self::attach)ed to the driver.
#[derive(Default)]
pub struct KvHandler {
    node: OnceLock<NodeClient<KvService>>,
    /// Requests that could not be decoded so far (logged at the 1st, 2nd, 4th, 8th, ...).
    undecodable: AtomicU64,
}

impl KvHandler {
    /// A handler not attached to a driver yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends requests to the driver behind `node` from now on (the first call wins).
    pub fn attach(&self, node: NodeClient<KvService>) {
        let _ = self.node.set(node);
    }

    /// Answers one decoded request.
    pub async fn serve(&self, request: ClientRequest) -> Reply {
        match self.node.get() {
            Some(node) => node
                .call(request)
                .await
                .unwrap_or(Err(KvError::Unavailable)),
            None => Err(KvError::Unavailable),
        }
    }
}

fn kind(request: &ClientRequest) -> &'static str {
    match request {
        ClientRequest::Get { .. } => "get",
        ClientRequest::Write { .. } => "write",
        ClientRequest::RegisterSession => "register",
        ClientRequest::KeepAlive { .. } => "keepalive",
        ClientRequest::Status => "status",
    }
}

#[async_trait]
impl RequestHandler for KvHandler {
    async fn handle(&self, request: Vec<u8>) -> Vec<u8> {
        let started = Instant::now();
        let (kind, reply) = match codec::decode::<ClientRequest>(&request) {
            Ok(request) => (kind(&request), self.serve(request).await),
            Err(e) => {
                let count = self.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
                if count.is_power_of_two() {
                    tracing::warn!(error = %e, count, "refused an undecodable client request");
                }
                ("undecodable", Err(KvError::Codec(e)))
            }
        };
        counter!("kv_requests_total", "kind" => kind).increment(1);
        if reply.is_err() {
            counter!("kv_request_errors_total", "kind" => kind).increment(1);
        }
        histogram!("kv_request_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
        codec::encode(&reply)
    }
}
