//! [`Client`]: the Clerk over QUIC, for async Rust programs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_service::{codec, ClientRequest, NodeId, NodeStatus, Reply, Response, WriteOutput};
use raft_transport_quic::pki::ClientTls;
use raft_transport_quic::{RpcClient, TransportError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::debug;

use crate::clerk::Clerk;
use crate::config::{ClerkConfig, ClerkConfigError};
use crate::op::{ClerkAction, ClerkError, OpId, OpOutput, Operation, RequestId};

/// Why an operation of a [`Client`] did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The operation did not take effect, and never will (for example, it is too large).
    #[error("not applied: {0}")]
    NotApplied(ClerkError),
    /// A write may have taken effect (exactly once) or not, and no server can tell any more;
    /// or the operation did not finish within the client's timeout (it may still take
    /// effect).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The client was [closed](Client::close), or its driver task is gone (the runtime is
    /// shutting down).
    #[error("the client is closed")]
    Closed,
    /// A direct call to one server failed (see [`Client::status`]).
    #[error("{0}")]
    Call(String),
    /// A server answered a direct call with an error.
    #[error("server error: {0}")]
    Server(kv_service::KvError),
}

impl ClientError {
    /// Whether the operation may have taken effect.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, ClientError::OutcomeUnknown(_) | ClientError::Closed)
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No endpoint was given, or an id is listed twice, or the Clerk settings are invalid.
    #[error("invalid client configuration: {0}")]
    Config(#[from] ClerkConfigError),
    /// The QUIC endpoint could not be made (bad certificate material, no socket).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The blocking client's runtime could not start.
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
}

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The Clerk's settings; its `servers` are filled from the endpoints.
    pub clerk: ClerkConfig,
    /// Longest wait for one operation before it fails with
    /// [`ClientError::OutcomeUnknown`] (default 30 s). The Clerk keeps retrying it meanwhile;
    /// a write may still take effect (once) after the timeout.
    pub op_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let mut clerk = ClerkConfig::new(Vec::new());
        clerk.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Self {
            clerk,
            op_timeout: Duration::from_secs(30),
        }
    }
}

type Waiter = oneshot::Sender<Result<OpOutput, ClerkError>>;

/// A client of the KV service: one [`Clerk`] (one session, leader tracking, retries,
/// pipelining up to its window) driven by a background task over QUIC with mutual TLS.
/// Cloning is cheap and clones share the Clerk, so many tasks can issue operations at once and
/// they pipeline. The task ends when the last clone is dropped.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use kv_client::Client;
/// use raft_transport_quic::pki::ClientTls;
/// let tls = ClientTls::read_from("cluster-data/certs/client".as_ref())?;
/// let endpoints = vec![
///     (1, "127.0.0.1:7101".parse()?),
///     (2, "127.0.0.1:7102".parse()?),
///     (3, "127.0.0.1:7103".parse()?),
/// ];
/// let client = Client::connect(endpoints, &tls)?;
/// client.put("greeting", "hello").await?;
/// client.append("greeting", ", world").await?;
/// assert_eq!(client.get("greeting").await?, Some(b"hello, world".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    submit: mpsc::UnboundedSender<(Operation, Waiter)>,
    rpc: Arc<RpcClient>,
    endpoints: Vec<(NodeId, SocketAddr)>,
    op_timeout: Duration,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.shared.endpoints)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the nodes at `endpoints` (id and address of each), presenting `tls`, with
    /// the default options. Must run inside a tokio runtime.
    pub fn connect(
        endpoints: Vec<(NodeId, SocketAddr)>,
        tls: &ClientTls,
    ) -> Result<Self, ConnectError> {
        Self::with_options(endpoints, tls, ClientOptions::default())
    }

    /// A client with `options`. Must run inside a tokio runtime.
    pub fn with_options(
        endpoints: Vec<(NodeId, SocketAddr)>,
        tls: &ClientTls,
        options: ClientOptions,
    ) -> Result<Self, ConnectError> {
        let mut config = options.clerk;
        config.servers = endpoints.iter().map(|&(id, _)| id).collect();
        let request_timeout = Duration::from_millis(config.request_timeout_ms);
        let clerk = Clerk::new(config)?;
        // Late answers are useless to the Clerk after its own timeout; give the network a
        // little more so that a slow answer still counts.
        let rpc =
            Arc::new(RpcClient::new(tls)?.with_timeout(request_timeout + request_timeout / 2));
        let (submit, submissions) = mpsc::unbounded_channel();
        let addrs = endpoints.iter().copied().collect();
        tokio::spawn(drive(clerk, submissions, Arc::clone(&rpc), addrs));
        Ok(Self {
            shared: Arc::new(Shared {
                submit,
                rpc,
                endpoints,
                op_timeout: options.op_timeout,
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The endpoints this client uses.
    pub fn endpoints(&self) -> &[(NodeId, SocketAddr)] {
        &self.shared.endpoints
    }

    /// Closes the connections to the nodes (of this client and all its clones) and waits up
    /// to half a second for the nodes to learn it. A program should close its client before it
    /// exits: a connection left open holds one of the node's places for clients until the
    /// node's idle timeout (nodes allow 16 per address by default). Operations started
    /// afterwards fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.shared.rpc.close(Duration::from_millis(500)).await;
    }

    /// Runs `operation` to its end: its output, or why it failed.
    pub async fn execute(&self, operation: Operation) -> Result<OpOutput, ClientError> {
        if self
            .shared
            .closed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(ClientError::Closed);
        }
        let (waiter, answer) = oneshot::channel();
        self.shared
            .submit
            .send((operation, waiter))
            .map_err(|_| ClientError::Closed)?;
        match tokio::time::timeout(self.shared.op_timeout, answer).await {
            Err(_elapsed) => Err(ClientError::OutcomeUnknown(format!(
                "no answer within {:?}",
                self.shared.op_timeout
            ))),
            Ok(Err(_dropped)) => Err(ClientError::Closed),
            Ok(Ok(Ok(output))) => Ok(output),
            Ok(Ok(Err(error @ ClerkError::OutcomeUnknown { .. }))) => {
                Err(ClientError::OutcomeUnknown(error.to_string()))
            }
            Ok(Ok(Err(error))) => Err(ClientError::NotApplied(error)),
        }
    }

    /// The value of `key` (`None`: absent). Linearizable.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, ClientError> {
        match self.execute(Operation::get(key)).await? {
            OpOutput::Value(value) => Ok(value),
            OpOutput::Written(other) => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.write(Operation::put(key, value)).await.map(drop)
    }

    /// Appends `value` to the value of `key` (sets it if absent).
    pub async fn append(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.write(Operation::append(key, value)).await.map(drop)
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<bool, ClientError> {
        match self.write(Operation::delete(key)).await? {
            WriteOutput::Deleted { existed } => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: if it is absent). Whether it
    /// swapped, and the value it held.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<(bool, Option<Vec<u8>>), ClientError> {
        match self
            .write(Operation::compare_and_swap(key, expected, new))
            .await?
        {
            WriteOutput::Swapped { swapped, previous } => Ok((swapped, previous)),
            other => Err(unexpected(other)),
        }
    }

    async fn write(&self, operation: Operation) -> Result<WriteOutput, ClientError> {
        match self.execute(operation).await? {
            OpOutput::Written(output) => Ok(output),
            OpOutput::Value(_) => Err(ClientError::Call("a write answered with a value".into())),
        }
    }

    /// The status of the node at `addr`, asked directly (not through the Clerk).
    pub async fn status(&self, addr: SocketAddr) -> Result<NodeStatus, ClientError> {
        let bytes = codec::encode(&ClientRequest::Status);
        let answer = self
            .shared
            .rpc
            .call(addr, bytes)
            .await
            .map_err(|e| ClientError::Call(e.to_string()))?;
        match codec::decode::<Reply>(&answer) {
            Ok(Ok(Response::Status(status))) => Ok(status),
            Ok(Ok(other)) => Err(ClientError::Call(format!("unexpected answer {other:?}"))),
            Ok(Err(error)) => Err(ClientError::Server(error)),
            Err(e) => Err(ClientError::Call(format!("undecodable answer: {e}"))),
        }
    }
}

fn unexpected(output: impl std::fmt::Debug) -> ClientError {
    ClientError::Call(format!("unexpected answer {output:?}"))
}

/// The Clerk's driver: submissions in, transmissions out, answers back, ticks at the
/// Clerk's deadlines. Ends when every [`Client`] clone is gone.
async fn drive(
    mut clerk: Clerk,
    mut submissions: mpsc::UnboundedReceiver<(Operation, Waiter)>,
    rpc: Arc<RpcClient>,
    addrs: HashMap<NodeId, SocketAddr>,
) {
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut waiting: HashMap<OpId, Waiter> = HashMap::new();
    let mut next_op: OpId = 1;
    let mut calls: JoinSet<(RequestId, Option<Vec<u8>>)> = JoinSet::new();
    let mut open = true;
    loop {
        let deadline = clerk
            .next_deadline()
            .map(|at| tokio::time::Instant::from_std(start + Duration::from_millis(at)));
        tokio::select! {
            submission = submissions.recv(), if open => match submission {
                Some((operation, waiter)) => {
                    let op = next_op;
                    next_op += 1;
                    // Ids are never reused, so the Clerk cannot refuse one as a duplicate.
                    if clerk.submit(now(), op, operation).is_ok() {
                        waiting.insert(op, waiter);
                    }
                }
                None => open = false,
            },
            Some(done) = calls.join_next() => {
                if let Ok((request, answer)) = done {
                    match answer {
                        Some(bytes) => clerk.on_reply_bytes(now(), request, &bytes),
                        None => clerk.on_transport_error(now(), request),
                    }
                }
            }
            _ = sleep_until(deadline) => clerk.tick(now()),
        }
        for action in clerk.take_actions() {
            match action {
                ClerkAction::Send {
                    request,
                    server,
                    message,
                } => {
                    let Some(&addr) = addrs.get(&server) else {
                        clerk.on_transport_error(now(), request);
                        continue;
                    };
                    let rpc = Arc::clone(&rpc);
                    let bytes = codec::encode(&message);
                    calls.spawn(async move {
                        let answer = rpc.call(addr, bytes).await;
                        if let Err(e) = &answer {
                            debug!(%addr, error = %e, "request failed");
                        }
                        (request, answer.ok())
                    });
                }
                ClerkAction::Completed { op, output } => {
                    if let Some(waiter) = waiting.remove(&op) {
                        let _ = waiter.send(Ok(output)); // the caller may have given up
                    }
                }
                ClerkAction::Failed { op, error } => {
                    if let Some(waiter) = waiting.remove(&op) {
                        let _ = waiter.send(Err(error));
                    }
                }
            }
        }
        if !open && waiting.is_empty() {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
