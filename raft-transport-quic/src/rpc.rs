//! Serving client requests: one bidirectional QUIC stream per request, carrying one request
//! frame and one response frame. The payloads are opaque bytes: the service (kv-service)
//! defines them.
//!
//! Every request runs under the [`ClientLimits`]: its size, a deadline to arrive and one to be
//! answered, its share of the node's client budget (or a refusal if the budget cannot take it
//! now), and the connection's limit on requests in progress; an idle connection is closed.
//!
//! Stream error codes: 1 malformed or too large, 2 response refused, 3 request not received in
//! time, 4 not answered in time, 5 busy (the budget is spent; retry). Connection code 8: idle.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::debug;

use crate::budget::{Budget, Charge};
use crate::frame::{self, FrameError, HEADER_BYTES};
use crate::limits::ClientLimits;
use crate::stats::{Counters, Refusal};

/// Serves client requests on a node's endpoint.
#[async_trait]
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers one request. Runs under the node's `handler_timeout` (writing the answer
    /// included): past it, the request is abandoned and its stream reset.
    async fn handle(&self, request: Vec<u8>) -> Vec<u8>;
}

/// QUIC error codes this side uses on client streams and connections.
mod codes {
    /// Stream: the request is malformed or too large.
    pub const BAD_REQUEST: u32 = 1;
    /// Stream: the response cannot be sent (too large, or no budget for it).
    pub const RESPONSE_REFUSED: u32 = 2;
    /// Stream: the request did not arrive in time.
    pub const READ_TIMEOUT: u32 = 3;
    /// Stream: the request was not answered in time.
    pub const HANDLER_TIMEOUT: u32 = 4;
    /// Stream: the node's client budget cannot take the request now; retry later.
    pub const BUSY: u32 = 5;
    /// Connection: idle for too long.
    pub const IDLE: u32 = 8;
}

/// The client service of one node, shared by its client connections.
pub(crate) struct ClientService {
    handler: Arc<dyn RequestHandler>,
    limits: ClientLimits,
    max_response_bytes: usize,
    budget: Budget,
    counters: Arc<Counters>,
}

/// Why a request was not read.
enum NotRead {
    /// The client budget could not cover it.
    Busy,
    /// The stream failed or the frame is bad.
    Frame(FrameError),
}

/// Why a request was not answered.
enum Unanswered {
    /// The node refused to send the answer.
    Refused(Refusal),
    /// The client went away (reset or stopped the stream, or the connection closed).
    StreamFailed,
}

/// A connection's requests in progress, and when the last one ended.
struct Activity {
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Instant)> {
        // Updated in single statements; a panic cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When the connection becomes idle for `idle` if nothing else happens.
    fn idle_at(&self, idle: Duration) -> Instant {
        let (in_progress, since) = *self.lock();
        if in_progress > 0 {
            Instant::now() + idle
        } else {
            since + idle
        }
    }

    fn begin(self: &Arc<Self>) -> InProgress {
        self.lock().0 += 1;
        InProgress(Arc::clone(self))
    }
}

/// One request in progress; its end counts as activity.
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        *state = (state.0.saturating_sub(1), Instant::now());
    }
}

impl ClientService {
    /// A service answering with `handler` within `limits`; responses up to
    /// `max_response_bytes`.
    pub(crate) fn new(
        handler: Arc<dyn RequestHandler>,
        limits: ClientLimits,
        max_response_bytes: usize,
        counters: Arc<Counters>,
    ) -> Self {
        let budget = Budget::new(limits.buffer_bytes);
        Self {
            handler,
            limits,
            max_response_bytes,
            budget,
            counters,
        }
    }

    /// Bytes of the budget held by requests and responses.
    pub(crate) fn bytes_held(&self) -> usize {
        self.budget.held()
    }

    /// Serves the requests of one (authenticated) client connection until it closes or stays
    /// idle too long.
    pub(crate) async fn serve(self: Arc<Self>, connection: quinn::Connection) {
        let remote = connection.remote_address();
        connection.set_max_concurrent_bi_streams(self.limits.max_concurrent_requests.into());
        let activity = Arc::new(Activity {
            state: Mutex::new((0, Instant::now())),
        });
        loop {
            let idle_at = activity.idle_at(self.limits.idle_timeout);
            tokio::select! {
                accepted = connection.accept_bi() => {
                    let Ok((send, recv)) = accepted else { break };
                    let in_progress = activity.begin();
                    let service = Arc::clone(&self);
                    tokio::spawn(async move {
                        service.request(send, recv, remote).await;
                        drop(in_progress);
                    });
                }
                () = tokio::time::sleep_until(idle_at) => {
                    if activity.idle_at(self.limits.idle_timeout) <= Instant::now() {
                        self.counters.refused(None, Refusal::Idle, &remote);
                        connection.close(codes::IDLE.into(), b"idle");
                        break;
                    }
                }
            }
        }
        debug!(%remote, "client connection closed");
    }

    /// Reads one request, has it answered and writes the answer, each under its deadline.
    async fn request(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        remote: SocketAddr,
    ) {
        let mut charge = self.budget.charge();
        let read = tokio::time::timeout(
            self.limits.read_timeout,
            self.read_request(&mut recv, &mut charge),
        )
        .await;
        let refused = |reason: Refusal, code: u32, send: &mut quinn::SendStream| {
            self.counters.refused(None, reason, &remote);
            let _ = send.reset(code.into());
        };
        let request = match read {
            Ok(Ok(Some(request))) => request,
            // The client closed the stream without a request, or reset it (gave up): nothing
            // to answer, nothing wrong.
            Ok(Ok(None)) | Ok(Err(NotRead::Frame(FrameError::Stream(_)))) => return,
            Ok(Err(NotRead::Busy)) => {
                let _ = recv.stop(codes::BUSY.into());
                return refused(Refusal::Busy, codes::BUSY, &mut send);
            }
            Ok(Err(NotRead::Frame(FrameError::TooLarge { .. }))) => {
                let _ = recv.stop(codes::BAD_REQUEST.into());
                return refused(Refusal::RequestTooLarge, codes::BAD_REQUEST, &mut send);
            }
            Ok(Err(NotRead::Frame(_))) => {
                let _ = recv.stop(codes::BAD_REQUEST.into());
                return refused(Refusal::BadRequest, codes::BAD_REQUEST, &mut send);
            }
            Err(_elapsed) => {
                let _ = recv.stop(codes::READ_TIMEOUT.into());
                return refused(Refusal::ReadTimeout, codes::READ_TIMEOUT, &mut send);
            }
        };
        let answered = tokio::time::timeout(
            self.limits.handler_timeout,
            self.answer(request, &mut send, &mut charge),
        )
        .await;
        match answered {
            Ok(Ok(())) => self.counters.served(),
            Ok(Err(Unanswered::Refused(reason))) => {
                refused(reason, codes::RESPONSE_REFUSED, &mut send);
            }
            Ok(Err(Unanswered::StreamFailed)) => {}
            Err(_elapsed) => refused(Refusal::HandlerTimeout, codes::HANDLER_TIMEOUT, &mut send),
        }
        // The charge is returned only now: until the client acknowledged the response, QUIC
        // holds its bytes.
        drop(charge);
    }

    /// Reads a request: its length, then (if the budget covers it) its body. `Ok(None)` when
    /// the stream ended before one.
    async fn read_request(
        &self,
        recv: &mut quinn::RecvStream,
        charge: &mut Charge,
    ) -> Result<Option<Vec<u8>>, NotRead> {
        let Some(len) = frame::read_len(recv, self.limits.max_request_bytes)
            .await
            .map_err(NotRead::Frame)?
        else {
            return Ok(None);
        };
        // With room for the header, so that an answer as long as the request fits too.
        if !charge.try_cover(len + HEADER_BYTES) {
            return Err(NotRead::Busy);
        }
        let body = frame::read_body(recv, len, |_| {})
            .await
            .map_err(NotRead::Frame)?;
        Ok(Some(body))
    }

    /// Has `request` answered and writes the answer, waiting until the client acknowledged
    /// it.
    async fn answer(
        &self,
        request: Vec<u8>,
        send: &mut quinn::SendStream,
        charge: &mut Charge,
    ) -> Result<(), Unanswered> {
        let response = self.handler.handle(request).await;
        let len = response.len();
        if len > self.max_response_bytes {
            return Err(Unanswered::Refused(Refusal::ResponseRefused));
        }
        // The request's bytes are gone (the handler consumed them); its charge now covers the
        // response, drawing more only if the budget has it now (waiting here would hold a
        // response the budget does not cover).
        if !charge.try_cover(len + HEADER_BYTES) {
            return Err(Unanswered::Refused(Refusal::ResponseRefused));
        }
        let prefix =
            u32::try_from(len).map_err(|_| Unanswered::Refused(Refusal::ResponseRefused))?;
        let mut chunks = [
            bytes::Bytes::copy_from_slice(&prefix.to_be_bytes()),
            bytes::Bytes::from(response),
        ];
        send.write_all_chunks(&mut chunks)
            .await
            .map_err(|_| Unanswered::StreamFailed)?;
        send.finish().map_err(|_| Unanswered::StreamFailed)?;
        match send.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(_)) | Err(_) => Err(Unanswered::StreamFailed),
        }
    }
}
