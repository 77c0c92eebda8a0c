//! [`Clerk`]: the client's retry logic, sans-IO.
//!
//! # Inputs and outputs
//!
//! Inputs are method calls, each with the driver's clock in milliseconds: an operation
//! submitted by the user ([`submit`](Clerk::submit)), the reply to a transmission
//! ([`on_reply`](Clerk::on_reply)), a transport error for a transmission
//! ([`on_transport_error`](Clerk::on_transport_error)), and time passing
//! ([`tick`](Clerk::tick), due at [`next_deadline`](Clerk::next_deadline)). Outputs are the
//! [`ClerkAction`]s returned by [`take_actions`](Clerk::take_actions): send this request to that
//! server, this operation completed, this operation failed.
//!
//! # Rules
//!
//! - **Leader.** Requests go to the server believed to lead; a `NotLeader` answer naming
//!   another server moves there at once, one without a name (or a timeout, or a transport error)
//!   moves to the next server in the list. Once every server has been tried without success, the
//!   Clerk backs off exponentially (capped, jittered from the configured seed). A server that
//!   answers `Busy` or "retry" is asked again after a backoff.
//! - **Sessions.** Before its first write the Clerk registers a session. Each write gets the
//!   next sequence number; every transmission of it carries that number and the lowest number
//!   the Clerk still waits for, so the servers execute it once and keep only the replies still
//!   needed. A reply from any transmission of an operation completes it.
//! - **Pipelining.** At most `window` operations are in flight, and writes stay within `window`
//!   sequence numbers of the oldest unanswered one. Operations start in submission order; ops in
//!   flight together are concurrent (their effects may take place in any order).
//! - **Liveness of the session.** While idle the Clerk sends keep-alives. If it has not proved
//!   its session alive for `session_timeout_ms` and has no write in flight, it registers a new
//!   session before the next write.
//! - **Definite answers only.** An operation ends with [`ClerkAction::Completed`] once it took
//!   effect (exactly once for a write) or with [`ClerkAction::Failed`] when its outcome can no
//!   longer change: `TooLarge` for a request that was never executed, or
//!   [`ClerkError::OutcomeUnknown`] for a write that may have executed but whose session expired
//!   (the Clerk never re-issues it under a new session). Everything else is retried, forever.

use std::collections::{BTreeMap, VecDeque};

use kv_service::{ClientRequest, KvError, NodeId, Reply, Response, Seq, SessionId, WriteOp};
use tracing::{debug, trace, warn};

use crate::backoff::{delay_ms, Delay, SplitMix64};
use crate::config::{ClerkConfig, ClerkConfigError};
use crate::op::{ClerkAction, ClerkError, OpId, OpOutput, Operation, RequestId};

/// Transmissions of one request whose late replies are still accepted.
const TRACKED_TRANSMISSIONS: usize = 8;

/// Why [`Clerk::submit`] refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// An unfinished operation already has this id.
    #[error("operation id {0} is already in use")]
    DuplicateOpId(OpId),
}

/// What a request in flight is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Op(OpId),
    Register,
    KeepAlive,
}

/// What a request asks.
#[derive(Clone, Debug)]
enum Body {
    Read {
        key: Vec<u8>,
    },
    Write {
        session: SessionId,
        seq: Seq,
        op: WriteOp,
    },
    Register,
    KeepAlive {
        session: SessionId,
    },
}

impl Body {
    /// The message for one transmission, with the lowest sequence still awaited.
    fn message(&self, lowest_unacked: Seq) -> ClientRequest {
        match self {
            Body::Read { key } => ClientRequest::Get { key: key.clone() },
            Body::Write { session, seq, op } => ClientRequest::Write {
                session: *session,
                seq: *seq,
                lowest_unacked: lowest_unacked.min(*seq),
                op: op.clone(),
            },
            Body::Register => ClientRequest::RegisterSession,
            Body::KeepAlive { session } => ClientRequest::KeepAlive { session: *session },
        }
    }

    /// The session the request belongs to, if any.
    fn session(&self) -> Option<SessionId> {
        match self {
            Body::Write { session, .. } | Body::KeepAlive { session } => Some(*session),
            Body::Read { .. } | Body::Register => None,
        }
    }
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// To be transmitted at `at`.
    Due { at: u64 },
    /// Transmitted to `servers[server]`, answer expected by `deadline`.
    Sent {
        request: RequestId,
        server: usize,
        deadline: u64,
    },
}

/// One request, retried until it gets a definite answer.
#[derive(Debug)]
struct Call {
    purpose: Purpose,
    body: Body,
    phase: Phase,
    /// Transmissions so far.
    attempts: u32,
    /// Failed attempts in a row (for backoff).
    failures: u32,
    /// When the first transmission left.
    first_sent_ms: Option<u64>,
    /// Ids of the latest transmissions, oldest first.
    recent: VecDeque<RequestId>,
}

impl Call {
    fn new(purpose: Purpose, body: Body, now: u64) -> Self {
        Self {
            purpose,
            body,
            phase: Phase::Due { at: now },
            attempts: 0,
            failures: 0,
            first_sent_ms: None,
            recent: VecDeque::new(),
        }
    }
}

/// The Clerk's session.
#[derive(Clone, Copy, Debug)]
struct Session {
    id: SessionId,
    next_seq: Seq,
    /// Send time of the latest request whose success proved the session alive.
    refreshed_ms: u64,
}

/// The exactly-once client, as a sans-IO state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Clerk {
    config: ClerkConfig,
    rng: SplitMix64,
    /// Index in `config.servers` of the presumed leader.
    leader: usize,
    session: Option<Session>,
    /// Operations not started yet, in submission order.
    queue: VecDeque<(OpId, Operation)>,
    /// Operations in flight, in the order they started.
    ops: Vec<Call>,
    register: Option<Call>,
    keepalive: Option<Call>,
    /// Transmissions whose answers are still accepted: what they are for, and to which server.
    requests: BTreeMap<RequestId, (Purpose, usize)>,
    next_request: RequestId,
    now_ms: u64,
    actions: Vec<ClerkAction>,
}

impl Clerk {
    /// A Clerk with no session yet.
    pub fn new(config: ClerkConfig) -> Result<Self, ClerkConfigError> {
        config.validate()?;
        Ok(Self {
            rng: SplitMix64::new(config.seed),
            config,
            leader: 0,
            session: None,
            queue: VecDeque::new(),
            ops: Vec::new(),
            register: None,
            keepalive: None,
            requests: BTreeMap::new(),
            next_request: 1,
            now_ms: 0,
            actions: Vec::new(),
        })
    }

    // ----- Accessors -----

    /// The configuration.
    pub fn config(&self) -> &ClerkConfig {
        &self.config
    }

    /// The server the Clerk believes leads.
    pub fn leader(&self) -> NodeId {
        self.config.servers[self.leader]
    }

    /// The current session, if registered.
    pub fn session(&self) -> Option<SessionId> {
        self.session.map(|s| s.id)
    }

    /// Operations submitted and not finished (queued or in flight).
    pub fn pending(&self) -> usize {
        self.queue.len() + self.ops.len()
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do (a retry, a
    /// timeout, a keep-alive), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let calls = self
            .ops
            .iter()
            .chain(self.register.iter())
            .chain(self.keepalive.iter());
        let mut next = calls
            .map(|c| match c.phase {
                Phase::Due { at } => at,
                Phase::Sent { deadline, .. } => deadline,
            })
            .min();
        if let (Some(interval), Some(session), None) = (
            self.config.keepalive_interval_ms,
            self.session,
            &self.keepalive,
        ) {
            if !self.writes_in_flight() {
                let due = session.refreshed_ms.saturating_add(interval);
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
    }

    // ----- Inputs -----

    /// Submits an operation. It starts when the window allows, and ends with one
    /// [`ClerkAction::Completed`] or [`ClerkAction::Failed`] carrying `op`.
    pub fn submit(
        &mut self,
        now_ms: u64,
        op: OpId,
        operation: Operation,
    ) -> Result<(), SubmitError> {
        let in_use = self.queue.iter().any(|&(id, _)| id == op)
            || self.ops.iter().any(|c| c.purpose == Purpose::Op(op));
        if in_use {
            return Err(SubmitError::DuplicateOpId(op));
        }
        self.queue.push_back((op, operation));
        self.pump(now_ms);
        Ok(())
    }

    /// The reply to transmission `request`. Replies to unknown, finished or forgotten
    /// transmissions are ignored.
    pub fn on_reply(&mut self, now_ms: u64, request: RequestId, reply: Reply) {
        self.observe(now_ms);
        let Some((purpose, server)) = self.requests.remove(&request) else {
            trace!(request, "reply to an unknown transmission ignored");
            return;
        };
        let Some(call) = self.call(purpose) else {
            return;
        };
        let current = matches!(call.phase, Phase::Sent { request: r, .. } if r == request);
        match reply {
            Ok(response) => self.on_success(purpose, server, current, response),
            Err(error) => self.on_error(purpose, server, current, error),
        }
        self.pump(now_ms);
    }

    /// The reply to transmission `request`, as bytes to decode with
    /// [`kv_service::codec`]; undecodable bytes count as a transport error.
    pub fn on_reply_bytes(&mut self, now_ms: u64, request: RequestId, bytes: &[u8]) {
        match kv_service::codec::decode::<Reply>(bytes) {
            Ok(reply) => self.on_reply(now_ms, request, reply),
            Err(error) => {
                warn!(request, %error, "undecodable reply");
                self.on_transport_error(now_ms, request);
            }
        }
    }

    /// Transmission `request` failed in transport (no answer will come).
    pub fn on_transport_error(&mut self, now_ms: u64, request: RequestId) {
        self.observe(now_ms);
        let Some((purpose, server)) = self.requests.remove(&request) else {
            return;
        };
        let current = self
            .call(purpose)
            .is_some_and(|c| matches!(c.phase, Phase::Sent { request: r, .. } if r == request));
        if current {
            debug!(
                request,
                server = self.config.servers[server],
                "transport error"
            );
            self.rotate_from(server);
            self.retry(purpose, Delay::Rotate);
        }
        self.pump(now_ms);
    }

    /// Time passes: times out transmissions, sends retries and keep-alives that are due.
    pub fn tick(&mut self, now_ms: u64) {
        self.observe(now_ms);
        let now = self.now_ms;
        let mut timed_out = Vec::new();
        for call in self
            .ops
            .iter()
            .chain(self.register.iter())
            .chain(self.keepalive.iter())
        {
            if let Phase::Sent {
                server, deadline, ..
            } = call.phase
            {
                if deadline <= now {
                    timed_out.push((call.purpose, server));
                }
            }
        }
        for (purpose, server) in timed_out {
            debug!(
                ?purpose,
                server = self.config.servers[server],
                "request timed out"
            );
            self.rotate_from(server);
            self.retry(purpose, Delay::Rotate);
        }
        self.pump(now);
    }

    /// Returns the actions accumulated since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<ClerkAction> {
        std::mem::take(&mut self.actions)
    }

    // ----- Answers -----

    fn on_success(&mut self, purpose: Purpose, server: usize, current: bool, response: Response) {
        let Some(call) = self.call(purpose) else {
            return;
        };
        let first_sent = call.first_sent_ms.unwrap_or(self.now_ms);
        match (&call.body, response) {
            (Body::Read { .. }, Response::Value(value)) => {
                self.finish(purpose, Ok(OpOutput::Value(value)));
            }
            (Body::Write { session, .. }, Response::Written(output)) => {
                self.refresh(*session, first_sent);
                self.finish(purpose, Ok(OpOutput::Written(output)));
            }
            (Body::Register, Response::SessionRegistered { session }) => {
                if self.session.is_none() {
                    debug!(session, "session registered");
                    self.session = Some(Session {
                        id: session,
                        next_seq: 1,
                        refreshed_ms: first_sent,
                    });
                }
                self.remove(purpose);
            }
            (Body::KeepAlive { session }, Response::KeptAlive) => {
                self.refresh(*session, first_sent);
                self.remove(purpose);
            }
            (_, response) => {
                warn!(?purpose, ?response, "answer does not fit the request");
                if current {
                    self.rotate_from(server);
                    self.retry(purpose, Delay::Rotate);
                }
                return;
            }
        }
        self.leader = server;
    }

    fn on_error(&mut self, purpose: Purpose, server: usize, current: bool, error: KvError) {
        let Some(call) = self.call(purpose) else {
            return;
        };
        let is_write = matches!(call.body, Body::Write { .. });
        let attempts = call.attempts;
        if let (KvError::SessionExpired, Some(session)) = (&error, call.body.session()) {
            // True whichever transmission says it: the session is gone for good.
            self.session_lost(session);
            return;
        }
        if !current {
            return; // the latest transmission is still pending
        }
        match error {
            KvError::NotLeader { leader_hint } => {
                let hinted = leader_hint
                    .and_then(|h| self.config.servers.iter().position(|&s| s == h))
                    .filter(|&i| i != server);
                match hinted {
                    Some(i) => {
                        self.leader = i;
                        self.retry(purpose, Delay::FollowHint);
                    }
                    None => {
                        self.rotate_from(server);
                        self.retry(purpose, Delay::Rotate);
                    }
                }
            }
            KvError::Busy | KvError::Retry { .. } => self.retry(purpose, Delay::Later),
            KvError::Unavailable | KvError::Codec(_) | KvError::SessionExpired => {
                self.rotate_from(server);
                self.retry(purpose, Delay::Rotate);
            }
            KvError::TooLarge { size, limit } if !is_write || attempts == 1 => {
                // Refused before proposing, and no other transmission exists: never executed.
                self.finish(purpose, Err(ClerkError::TooLarge { size, limit }));
            }
            cause @ (KvError::TooLarge { .. }
            | KvError::StaleRequest { .. }
            | KvError::WindowExceeded { .. }
            | KvError::BadSequence { .. }) => {
                if is_write {
                    warn!(?purpose, %cause, "write ends with an unknown outcome");
                    self.finish(purpose, Err(ClerkError::OutcomeUnknown { cause }));
                } else {
                    self.retry(purpose, Delay::Later);
                }
            }
        }
    }

    /// The session expired (or was evicted): writes sent under it end with an unknown outcome,
    /// writes never sent start again under a new session.
    fn session_lost(&mut self, session: SessionId) {
        if self.session.is_some_and(|s| s.id == session) {
            debug!(session, "session lost");
            self.session = None;
            self.remove(Purpose::KeepAlive);
        }
        let lost: Vec<Purpose> = self
            .ops
            .iter()
            .filter(|c| c.body.session() == Some(session))
            .map(|c| c.purpose)
            .collect();
        let mut requeue = Vec::new();
        for purpose in lost {
            let Some(call) = self.remove(purpose) else {
                continue;
            };
            let Purpose::Op(op) = purpose else {
                continue;
            };
            match call.body {
                Body::Write { op: write, .. } if call.attempts == 0 => {
                    requeue.push((op, Operation::Write(write)));
                }
                _ => self.actions.push(ClerkAction::Failed {
                    op,
                    error: ClerkError::OutcomeUnknown {
                        cause: KvError::SessionExpired,
                    },
                }),
            }
        }
        for entry in requeue.into_iter().rev() {
            self.queue.push_front(entry);
        }
    }

    // ----- Progress -----

    /// Starts what can start and transmits what is due.
    fn pump(&mut self, now_ms: u64) {
        self.observe(now_ms);
        self.maintain_session();
        self.admit();
        self.maybe_keepalive();
        self.transmit_due();
    }

    fn maintain_session(&mut self) {
        let now = self.now_ms;
        if let Some(session) = self.session {
            let stale = now.saturating_sub(session.refreshed_ms) > self.config.session_timeout_ms;
            if stale && !self.writes_in_flight() {
                debug!(
                    session = session.id,
                    "session not proven alive lately; dropping it"
                );
                self.session = None;
                self.remove(Purpose::KeepAlive);
            }
        }
        let write_waiting = self.queue.iter().any(|(_, op)| op.is_write());
        if self.session.is_none() && self.register.is_none() && write_waiting {
            self.register = Some(Call::new(Purpose::Register, Body::Register, now));
        }
    }

    fn admit(&mut self) {
        let now = self.now_ms;
        let window = self.config.window;
        while self.ops.len() < window {
            let Some((op, operation)) = self.queue.front() else {
                break;
            };
            let op = *op;
            let body = match operation {
                Operation::Get { key } => Body::Read { key: key.clone() },
                Operation::Write(write) => {
                    let lowest = self.lowest_unacked();
                    let Some(session) = self.session.as_mut() else {
                        break;
                    };
                    if session.next_seq >= lowest.saturating_add(window as u64) {
                        break;
                    }
                    let seq = session.next_seq;
                    session.next_seq += 1;
                    Body::Write {
                        session: session.id,
                        seq,
                        op: write.clone(),
                    }
                }
            };
            self.queue.pop_front();
            self.ops.push(Call::new(Purpose::Op(op), body, now));
        }
    }

    fn maybe_keepalive(&mut self) {
        let (Some(interval), Some(session)) = (self.config.keepalive_interval_ms, self.session)
        else {
            return;
        };
        if self.keepalive.is_some() || self.writes_in_flight() {
            return;
        }
        if self.now_ms.saturating_sub(session.refreshed_ms) >= interval {
            let body = Body::KeepAlive {
                session: session.id,
            };
            self.keepalive = Some(Call::new(Purpose::KeepAlive, body, self.now_ms));
        }
    }

    fn transmit_due(&mut self) {
        let now = self.now_ms;
        let due: Vec<Purpose> = self
            .register
            .iter()
            .chain(self.keepalive.iter())
            .chain(self.ops.iter())
            .filter(|c| matches!(c.phase, Phase::Due { at } if at <= now))
            .map(|c| c.purpose)
            .collect();
        for purpose in due {
            self.transmit(purpose);
        }
    }

    fn transmit(&mut self, purpose: Purpose) {
        let lowest = self.lowest_unacked();
        let now = self.now_ms;
        let server = self.leader;
        let server_id = self.config.servers[server];
        let request = self.next_request;
        let deadline = now.saturating_add(self.config.request_timeout_ms);
        if self.call(purpose).is_none() {
            return;
        }
        self.next_request += 1;
        let Some(call) = self.call_mut(purpose) else {
            return;
        };
        let message = call.body.message(lowest);
        call.phase = Phase::Sent {
            request,
            server,
            deadline,
        };
        call.attempts += 1;
        call.first_sent_ms.get_or_insert(now);
        call.recent.push_back(request);
        let forgotten = if call.recent.len() > TRACKED_TRANSMISSIONS {
            call.recent.pop_front()
        } else {
            None
        };
        if let Some(old) = forgotten {
            self.requests.remove(&old);
        }
        self.requests.insert(request, (purpose, server));
        trace!(request, server = server_id, ?purpose, "transmit");
        self.actions.push(ClerkAction::Send {
            request,
            server: server_id,
            message,
        });
    }

    // ----- Helpers -----

    fn observe(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn writes_in_flight(&self) -> bool {
        self.ops
            .iter()
            .any(|c| matches!(c.body, Body::Write { .. }))
    }

    /// The lowest sequence of the current session still awaited.
    fn lowest_unacked(&self) -> Seq {
        let Some(session) = self.session else {
            return 0;
        };
        self.ops
            .iter()
            .filter_map(|c| match c.body {
                Body::Write {
                    session: s, seq, ..
                } if s == session.id => Some(seq),
                _ => None,
            })
            .min()
            .unwrap_or(session.next_seq)
    }

    fn refresh(&mut self, session: SessionId, sent_ms: u64) {
        if let Some(s) = self.session.as_mut().filter(|s| s.id == session) {
            s.refreshed_ms = s.refreshed_ms.max(sent_ms);
        }
    }

    /// The presumed leader did not answer: move on to the next server (unless a hint already
    /// moved the Clerk elsewhere).
    fn rotate_from(&mut self, server: usize) {
        if self.leader == server {
            self.leader = (server + 1) % self.config.servers.len();
        }
    }

    /// Schedules the next attempt of `purpose`.
    fn retry(&mut self, purpose: Purpose, kind: Delay) {
        let servers = u32::try_from(self.config.servers.len()).unwrap_or(u32::MAX);
        let (min, max) = (self.config.backoff_min_ms, self.config.backoff_max_ms);
        let now = self.now_ms;
        let Some(call) = self.call_mut(purpose) else {
            return;
        };
        call.failures = call.failures.saturating_add(1);
        let failures = call.failures;
        let delay = delay_ms(kind, failures, servers, min, max, &mut self.rng);
        if let Some(call) = self.call_mut(purpose) {
            call.phase = Phase::Due {
                at: now.saturating_add(delay),
            };
        }
    }

    /// Ends an operation and reports it.
    fn finish(&mut self, purpose: Purpose, result: Result<OpOutput, ClerkError>) {
        self.remove(purpose);
        if let Purpose::Op(op) = purpose {
            self.actions.push(match result {
                Ok(output) => ClerkAction::Completed { op, output },
                Err(error) => ClerkAction::Failed { op, error },
            });
        }
    }

    /// Removes a request and forgets its transmissions.
    fn remove(&mut self, purpose: Purpose) -> Option<Call> {
        let call = match purpose {
            Purpose::Register => self.register.take(),
            Purpose::KeepAlive => self.keepalive.take(),
            Purpose::Op(_) => {
                let i = self.ops.iter().position(|c| c.purpose == purpose)?;
                Some(self.ops.remove(i))
            }
        }?;
        for request in &call.recent {
            self.requests.remove(request);
        }
        Some(call)
    }

    fn call(&self, purpose: Purpose) -> Option<&Call> {
        match purpose {
            Purpose::Register => self.register.as_ref(),
            Purpose::KeepAlive => self.keepalive.as_ref(),
            Purpose::Op(_) => self.ops.iter().find(|c| c.purpose == purpose),
        }
    }

    fn call_mut(&mut self, purpose: Purpose) -> Option<&mut Call> {
        match purpose {
            Purpose::Register => self.register.as_mut(),
            Purpose::KeepAlive => self.keepalive.as_mut(),
            Purpose::Op(_) => self.ops.iter_mut().find(|c| c.purpose == purpose),
        }
    }
}
