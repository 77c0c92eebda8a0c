//! The driver task: one node and its service on tokio, the lanes of raft-core's ordering
//! contract carried out against a [`Persister`] and a [`Transport`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::metrics::counter;
use raft_core::{Action, PersistUpdate, Persister, RaftNode, Status, Transport};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::metrics::{self, PeerCounters};
use crate::service::{RequestId, Service};
use crate::storage;

/// How a driver runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Time between two ticks of the node (default 10 ms): the node's election and heartbeat
    /// settings are counted in ticks.
    pub tick_interval: Duration,
    /// Client requests that may wait for the driver before [`NodeClient::call`] waits too
    /// (default 4096).
    pub request_queue: usize,
    /// Requests taken from the queue before the node's actions are carried out (default 512):
    /// requests that arrive together go out in one batch (one AppendEntries, one write).
    pub max_batch: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            tick_interval: Duration::from_millis(10),
            request_queue: 4096,
            max_batch: 512,
        }
    }
}

/// Why a driver stopped other than by [`NodeHandle::shutdown`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A write failed: what reached the disk is unknown, so the node must not go on (restart
    /// it, which reads back what is durable).
    #[error("storage failed: {0}")]
    Storage(String),
    /// The transport shut down under the driver.
    #[error("the transport shut down")]
    TransportClosed,
    /// The driver task panicked or was cancelled.
    #[error("the driver task ended abnormally: {0}")]
    Aborted(String),
}

/// A request could not be answered: the driver stopped (or is stopping) before it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node stopped before answering")]
pub struct NodeStopped;

type Call<S> = (
    <S as Service>::Request,
    oneshot::Sender<<S as Service>::Reply>,
);

/// Sends requests to a running driver and watches its status; cheap to clone.
pub struct NodeClient<S: Service> {
    requests: mpsc::Sender<Call<S>>,
    status: watch::Receiver<Status>,
}

impl<S: Service> Clone for NodeClient<S> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
            status: self.status.clone(),
        }
    }
}

impl<S: Service> NodeClient<S> {
    /// Hands `request` to the service and waits for its answer. Waits for room when the
    /// driver's queue is full; fails once the driver stops.
    pub async fn call(&self, request: S::Request) -> Result<S::Reply, NodeStopped> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((request, reply))
            .await
            .map_err(|_| NodeStopped)?;
        answer.await.map_err(|_| NodeStopped)
    }

    /// The node's latest published status: a change of role, term, vote or leader is
    /// published at once, index progress at most one tick late.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status the driver publishes (see [`status`](Self::status)
    /// for when).
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }
}

/// A running driver: its [`NodeClient`], and the means to stop it.
pub struct NodeHandle<S: Service> {
    client: NodeClient<S>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), NodeError>>,
}

impl<S: Service> NodeHandle<S> {
    /// A client of the driver.
    pub fn client(&self) -> NodeClient<S> {
        self.client.clone()
    }

    /// Whether the driver task has ended (stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the driver cleanly: it accepts no more requests, fails those still waiting (their
    /// callers get [`NodeStopped`]), writes every persist already emitted, and returns how it
    /// ended. A driver that had already failed returns that failure.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits for the driver to end on its own (a storage failure, the transport closing).
    pub async fn join(self) -> Result<(), NodeError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(NodeError::Aborted(e.to_string())),
        }
    }
}

/// Starts a driver for `raft` and `service` (both restored from what `persister` loaded) on
/// the current tokio runtime.
///
/// The driver task owns the node and the service and carries out the ordering contract
/// ([`raft_core::action`]): persists go to a storage task that writes them in order, folding a
/// backlog into one write and one fsync, and reports them durable; messages go to the
/// transport at once (a leader's AppendEntries leave while its own write of the same entries
/// is in progress); state-machine actions go to the service in order, on the driver task, with
/// no lock the request path needs. Requests that arrive together are handled before the
/// node's actions are taken, so they share one AppendEntries and one write.
pub fn spawn<S, P, T>(
    raft: RaftNode,
    service: S,
    persister: Arc<P>,
    transport: Arc<T>,
    config: NodeConfig,
) -> NodeHandle<S>
where
    S: Service,
    P: Persister + ?Sized + 'static,
    T: Transport + ?Sized + 'static,
{
    let (requests_tx, requests) = mpsc::channel(config.request_queue.max(1));
    let (status_tx, status) = watch::channel(raft.status());
    let (stop, stop_rx) = watch::channel(false);
    let driver = Driver {
        raft,
        service,
        transport,
        config,
        requests,
        status: status_tx,
        waiting: HashMap::new(),
        next_request: 1,
        peers: PeerCounters::default(),
        publish_due: true,
    };
    let task = tokio::spawn(driver.run(persister, stop_rx));
    NodeHandle {
        client: NodeClient {
            requests: requests_tx,
            status,
        },
        stop,
        task,
    }
}

/// What woke the driver.
enum Event<S: Service> {
    Stop,
    Durable(Option<storage::Durable>),
    Tick,
    Message(Option<raft_core::Message>),
    Request(Call<S>),
}

/// The node's clock: ticks fall due every `interval` of monotonic time, and all those due are
/// taken at once, however late the driver looks (a paused process catches up at once rather
/// than one tick per interval).
struct TickClock {
    interval: Duration,
    next: tokio::time::Instant,
}

/// At most this many ticks are taken at once: more than any election timeout, so a longer
/// pause has the same effect.
const MAX_CATCH_UP_TICKS: u64 = 10_000;

impl TickClock {
    fn new(interval: Duration) -> Self {
        let interval = interval.max(Duration::from_micros(100));
        Self {
            interval,
            next: tokio::time::Instant::now() + interval,
        }
    }

    /// When the next tick falls due.
    fn next(&self) -> tokio::time::Instant {
        self.next
    }

    /// The number of ticks due now (0 or more), and the clock moved past them.
    fn take_due(&mut self) -> u64 {
        let now = tokio::time::Instant::now();
        if now < self.next {
            return 0;
        }
        let late = now.duration_since(self.next);
        let due = 1 + u64::try_from(late.as_nanos() / self.interval.as_nanos()).unwrap_or(u64::MAX);
        if due > MAX_CATCH_UP_TICKS {
            self.next = now + self.interval;
            return MAX_CATCH_UP_TICKS;
        }
        // `due` is at most MAX_CATCH_UP_TICKS here, so it fits a u32.
        self.next += self.interval * due as u32;
        due
    }
}

struct Driver<S: Service, T: ?Sized> {
    raft: RaftNode,
    service: S,
    transport: Arc<T>,
    config: NodeConfig,
    requests: mpsc::Receiver<Call<S>>,
    status: watch::Sender<Status>,
    waiting: HashMap<RequestId, oneshot::Sender<S::Reply>>,
    next_request: RequestId,
    peers: PeerCounters,
    /// A tick passed since the status was last published.
    publish_due: bool,
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<S, T> Driver<S, T>
where
    S: Service,
    T: Transport + ?Sized + 'static,
{
    async fn run<P: Persister + ?Sized + 'static>(
        mut self,
        persister: Arc<P>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let (updates, storage_updates) = mpsc::unbounded_channel::<PersistUpdate>();
        let (durable_tx, mut durable) = mpsc::unbounded_channel();
        let storage = tokio::spawn(storage::run(persister, storage_updates, durable_tx));
        let transport = Arc::clone(&self.transport);
        let mut clock = TickClock::new(self.config.tick_interval);
        // One timer for the whole run, moved only when the next tick moves: registering a new
        // timer on every pass costs more than the rest of a pass's bookkeeping.
        let next_tick = tokio::time::sleep_until(clock.next());
        tokio::pin!(next_tick);
        info!(id = self.raft.id(), "node driver started");
        let outcome = loop {
            let event: Event<S> = tokio::select! {
                _ = stop.changed() => Event::Stop,
                report = durable.recv() => Event::Durable(report),
                _ = &mut next_tick => Event::Tick,
                message = transport.recv() => Event::Message(message),
                Some(call) = self.requests.recv() => Event::Request(call),
            };
            // Time first: every tick that fell due (also while the process was stopped or
            // starved) happens before the event is handled, so a node never acts on a lease
            // or a leadership that its clock would already have ended.
            let due = clock.take_due();
            if due > 0 {
                self.service.tick(now_ms());
                for _ in 0..due {
                    self.raft.tick();
                }
                next_tick.as_mut().reset(clock.next());
                self.publish_due = true;
            }
            match event {
                Event::Stop => break Ok(()),
                Event::Durable(Some(Ok(id))) => self.raft.persisted(id),
                Event::Durable(Some(Err(e))) => break Err(NodeError::Storage(e)),
                Event::Durable(None) => {
                    break Err(NodeError::Storage("the storage task ended".into()))
                }
                Event::Tick => {}
                Event::Message(Some(message)) => {
                    counter!("raft_messages_received_total").increment(1);
                    self.raft.step(message);
                }
                Event::Message(None) => break Err(NodeError::TransportClosed),
                Event::Request(call) => self.admit(call),
            }
            // Take what else is ready, so that it shares this pass.
            for _ in 1..self.config.max_batch {
                match self.requests.try_recv() {
                    Ok(call) => self.admit(call),
                    Err(_) => break,
                }
            }
            while let Ok(report) = durable.try_recv() {
                match report {
                    Ok(id) => self.raft.persisted(id),
                    Err(e) => return self.fail(NodeError::Storage(e), updates, storage).await,
                }
            }
            self.carry_out(&updates);
            self.publish();
        };
        match outcome {
            Ok(()) => {
                info!(id = self.raft.id(), "node driver stopping");
                self.requests.close();
                // Requests still queued or waiting are dropped: their callers hear NodeStopped.
                self.waiting.clear();
                drop(updates);
                // Everything already emitted is written before the driver returns.
                let _ = storage.await;
                Ok(())
            }
            Err(e) => self.fail(e, updates, storage).await,
        }
    }

    async fn fail(
        &mut self,
        error: NodeError,
        updates: mpsc::UnboundedSender<PersistUpdate>,
        storage: JoinHandle<()>,
    ) -> Result<(), NodeError> {
        warn!(id = self.raft.id(), %error, "node driver failed");
        self.requests.close();
        self.waiting.clear();
        drop(updates);
        storage.abort();
        Err(error)
    }

    fn admit(&mut self, (request, reply): Call<S>) {
        let id = self.next_request;
        self.next_request += 1;
        counter!("raft_requests_total").increment(1);
        self.waiting.insert(id, reply);
        self.service
            .handle_request(&mut self.raft, now_ms(), id, request);
    }

    /// Takes the node's actions until it has none, each to its lane, then answers.
    fn carry_out(&mut self, updates: &mpsc::UnboundedSender<PersistUpdate>) {
        loop {
            for action in self.raft.take_actions() {
                match action {
                    Action::Persist(update) => {
                        self.service.persisting(&update);
                        // The storage task ends only after this sender is dropped, or after a
                        // failure that the next pass reports; a lost update is then moot.
                        let _ = updates.send(update);
                    }
                    Action::Send(message) => {
                        let to = message.to;
                        let sent = self.transport.send(message);
                        if let Err(e) = &sent {
                            debug!(to, error = %e, "send refused");
                        }
                        self.peers.sent(to, sent.is_ok());
                    }
                    action => {
                        let entries = match &action {
                            Action::Apply(entries) => entries.len(),
                            _ => 0,
                        };
                        let started = Instant::now();
                        self.service.apply(&mut self.raft, action);
                        metrics::apply(started.elapsed(), entries);
                    }
                }
            }
            self.service.settle(&mut self.raft);
            if !self.raft.has_actions() {
                break;
            }
        }
        for (id, reply) in self.service.take_replies() {
            match self.waiting.remove(&id) {
                // The caller may have given up; nothing to do then.
                Some(waiter) => drop(waiter.send(reply)),
                None => warn!(id, "the service answered a request it was not given"),
            }
        }
    }

    /// Publishes the node's status: at once when its role, term, vote or leader changed, and
    /// otherwise (indexes moving) at most once per tick, which spares watchers a wake-up and
    /// the driver a status per pass under load.
    fn publish(&mut self) {
        let status = self.raft.status();
        let publish_due = std::mem::take(&mut self.publish_due);
        self.status.send_if_modified(|current| {
            if *current == status {
                return false;
            }
            let changed_hands = (
                current.role,
                current.term,
                current.voted_for,
                current.leader_id,
            ) != (status.role, status.term, status.voted_for, status.leader_id);
            if !changed_hands && !publish_due {
                return false;
            }
            metrics::status(&status);
            *current = status;
            true
        });
    }
}
