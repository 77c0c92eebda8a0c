//! Outbound traffic to one peer: a bounded queue, a long-lived connection re-established with
//! capped exponential backoff, and two unidirectional streams so that small messages
//! (heartbeats, votes, acknowledgements) never wait behind a large one (snapshot chunks, big
//! append batches). The small-message stream also has the higher send priority.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_core::NodeId;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::frame::{self, PeerFrame};
use crate::pki::peer_name;
use crate::stats::{Counters, DropReason};

/// Frames at least this long go on the bulk stream.
pub const BULK_THRESHOLD: usize = 16 * 1024;

/// How the sending side of one peer is tuned.
#[derive(Clone, Debug)]
pub struct PeerLimits {
    /// Messages queued per stream before `send` drops.
    pub queue_messages: usize,
    /// Bytes queued (both streams) before `send` drops.
    pub queue_bytes: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Frame size limit.
    pub max_frame_bytes: usize,
}

/// The sending side of one peer, owned by the node.
#[derive(Debug)]
pub struct PeerSender {
    control: mpsc::Sender<Vec<u8>>,
    bulk: mpsc::Sender<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes: usize,
}

/// Why a frame was not queued.
pub enum Refused {
    /// The queue is full.
    Full,
    /// The peer task is gone (shutting down).
    Closed,
}

impl PeerSender {
    /// Queues an encoded frame, never waiting.
    pub fn try_send(&self, frame: Vec<u8>) -> Result<(), Refused> {
        let len = frame.len();
        if self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len > self.queue_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        let queue = if len >= BULK_THRESHOLD {
            &self.bulk
        } else {
            &self.control
        };
        queue.try_send(frame).map_err(|e| {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }
}

/// What every peer task shares with the node.
#[derive(Clone)]
pub struct PeerContext {
    /// The node's endpoint, which dials.
    pub endpoint: quinn::Endpoint,
    /// How to dial a peer.
    pub client: quinn::ClientConfig,
    /// This node.
    pub me: NodeId,
    /// Queue and reconnect tuning.
    pub limits: PeerLimits,
    /// Where drops are counted.
    pub counters: Arc<Counters>,
    /// Becomes `true` when the node shuts down: stop dialing.
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the task that delivers frames to peer `id` at `addr`; it ends once the returned
/// sender is dropped and the queued frames are written, or at once if the peer cannot be
/// reached when the node shuts down.
pub fn spawn(
    context: PeerContext,
    id: NodeId,
    addr: SocketAddr,
) -> (PeerSender, tokio::task::JoinHandle<()>) {
    let PeerContext {
        endpoint,
        client,
        me,
        limits,
        counters,
        shutdown,
    } = context;
    let (control_tx, control_rx) = mpsc::channel(limits.queue_messages);
    let (bulk_tx, bulk_rx) = mpsc::channel(limits.queue_messages);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let sender = PeerSender {
        control: control_tx,
        bulk: bulk_tx,
        queued_bytes: Arc::clone(&queued_bytes),
        queue_bytes: limits.queue_bytes,
    };
    let task = PeerTask {
        endpoint,
        client,
        me,
        id,
        addr,
        limits,
        queued_bytes,
        counters,
        shutdown,
    };
    let handle = tokio::spawn(task.run(control_rx, bulk_rx));
    (sender, handle)
}

struct PeerTask {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    me: NodeId,
    id: NodeId,
    addr: SocketAddr,
    limits: PeerLimits,
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    shutdown: watch::Receiver<bool>,
}

/// How a stream writer stopped.
enum Ended {
    /// Its queue closed and everything was written: shutting down.
    Drained,
    /// The connection or stream failed.
    Lost(String),
}

impl PeerTask {
    async fn run(self, mut control: mpsc::Receiver<Vec<u8>>, mut bulk: mpsc::Receiver<Vec<u8>>) {
        let mut backoff = self.limits.backoff_min;
        loop {
            let connection = match self.connect().await {
                Ok(connection) => connection,
                Err(reason) => {
                    debug!(peer = self.id, addr = %self.addr, %reason, ?backoff, "peer unreachable; retrying");
                    // Messages queued meanwhile are dropped (the protocol retransmits), so a long
                    // outage leaves no stale burst behind; the task ends once shut down.
                    if !self
                        .drop_queued_during(backoff, &mut control, &mut bulk)
                        .await
                    {
                        return;
                    }
                    backoff = (backoff * 2).min(self.limits.backoff_max);
                    continue;
                }
            };
            backoff = self.limits.backoff_min;
            debug!(peer = self.id, addr = %self.addr, "connected to peer");
            let (a, b) = tokio::join!(
                self.write_stream(&connection, &mut control, 1),
                self.write_stream(&connection, &mut bulk, 0),
            );
            match (a, b) {
                (Ended::Drained, Ended::Drained) => {
                    connection.close(0u32.into(), b"shutdown");
                    return;
                }
                (Ended::Lost(reason), _) | (_, Ended::Lost(reason)) => {
                    debug!(peer = self.id, %reason, "connection to peer lost");
                    connection.close(1u32.into(), b"stream failed");
                }
            }
        }
    }

    /// Dials the peer; gives up early once the node shuts down (a handshake with an
    /// unreachable peer lasts until QUIC's idle timeout).
    async fn connect(&self) -> Result<quinn::Connection, String> {
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), self.addr, &peer_name(self.id))
            .map_err(|e| e.to_string())?;
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            connected = connecting => connected.map_err(|e| e.to_string()),
            _ = shutdown.wait_for(|&down| down) => Err("shutting down".to_string()),
        }
    }

    /// Waits `delay` while discarding queued frames; `false` once both queues are closed.
    async fn drop_queued_during(
        &self,
        delay: Duration,
        control: &mut mpsc::Receiver<Vec<u8>>,
        bulk: &mut mpsc::Receiver<Vec<u8>>,
    ) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        let (mut control_open, mut bulk_open) = (true, true);
        loop {
            tokio::select! {
                () = &mut sleep => return control_open || bulk_open,
                frame = control.recv(), if control_open => match frame {
                    Some(frame) => self.discard(frame.len()),
                    None => control_open = false,
                },
                frame = bulk.recv(), if bulk_open => match frame {
                    Some(frame) => self.discard(frame.len()),
                    None => bulk_open = false,
                },
                else => return false,
            }
        }
    }

    fn written(&self, len: usize) {
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// A queued frame dropped because the peer cannot be reached.
    fn discard(&self, len: usize) {
        self.written(len);
        self.counters.dropped(
            self.id,
            DropReason::PeerUnreachable,
            &format_args!("address {}", self.addr),
        );
    }

    /// Opens one stream, introduces us, then writes queued frames until the queue closes or
    /// the connection fails.
    async fn write_stream(
        &self,
        connection: &quinn::Connection,
        queue: &mut mpsc::Receiver<Vec<u8>>,
        priority: i32,
    ) -> Ended {
        // Open the stream only when there is something to send, so an idle bulk stream costs
        // nothing; the hello goes first on every stream.
        let mut stream: Option<quinn::SendStream> = None;
        loop {
            let next = tokio::select! {
                frame = queue.recv() => frame,
                reason = connection.closed() => return Ended::Lost(reason.to_string()),
            };
            let Some(frame) = next else {
                if let Some(mut stream) = stream {
                    // Drain: finish the stream and wait until the peer has everything.
                    let _ = stream.finish();
                    let _ = stream.stopped().await;
                }
                return Ended::Drained;
            };
            let len = frame.len();
            if stream.is_none() {
                match self.open(connection, priority).await {
                    Ok(opened) => stream = Some(opened),
                    Err(reason) => {
                        self.discard(len);
                        return Ended::Lost(reason);
                    }
                }
            }
            let Some(open) = stream.as_mut() else {
                continue;
            };
            let result = open.write_all(&frame).await;
            self.written(len);
            if let Err(e) = result {
                return Ended::Lost(e.to_string());
            }
        }
    }

    async fn open(
        &self,
        connection: &quinn::Connection,
        priority: i32,
    ) -> Result<quinn::SendStream, String> {
        let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
        // Priority is advisory; a stream already closed reports an error that the write below
        // reports again.
        let _ = stream.set_priority(priority);
        let hello = frame::encode(
            &PeerFrame::Hello { node_id: self.me },
            self.limits.max_frame_bytes,
        )
        .map_err(|e| e.to_string())?;
        stream.write_all(&hello).await.map_err(|e| {
            warn!(peer = self.id, error = %e, "cannot introduce ourselves to peer");
            e.to_string()
        })?;
        Ok(stream)
    }
}
