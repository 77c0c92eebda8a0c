//! Counters of what the transport delivered, dropped and refused, for metrics
//! ([`QuicNode::stats`](crate::QuicNode::stats)), and warnings limited to one line per peer and
//! reason per interval, carrying the count since the previous line.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft_core::NodeId;
use tracing::warn;

/// Why a Raft message was dropped. The protocol tolerates lost messages (it retransmits); these
/// counters say how many and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// `send` found the queue to the peer full: the peer is slow, or not reading.
    SendQueueFull,
    /// Queued for a peer that could not be reached, and discarded while reconnecting.
    PeerUnreachable,
    /// Received from the peer, but the node's inbound queue was full: the node does not call
    /// `recv` fast enough.
    InboundQueueFull,
    /// Received on the peer's connection with a `from` other than the peer or a `to` other than
    /// this node (forged, or a bug).
    Misaddressed,
}

impl DropReason {
    /// Every reason, in order.
    pub const ALL: [DropReason; 4] = [
        Self::SendQueueFull,
        Self::PeerUnreachable,
        Self::InboundQueueFull,
        Self::Misaddressed,
    ];

    /// A stable snake_case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendQueueFull => "send_queue_full",
            Self::PeerUnreachable => "peer_unreachable",
            Self::InboundQueueFull => "inbound_queue_full",
            Self::Misaddressed => "misaddressed",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::SendQueueFull => "queue to peer full; messages dropped",
            Self::PeerUnreachable => "peer unreachable; queued messages dropped",
            Self::InboundQueueFull => "inbound queue full; messages from peer dropped",
            Self::Misaddressed => {
                "messages whose sender or receiver does not match the connection; dropped"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a connection, a stream or a client request was refused or closed by this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The TLS handshake failed or took too long: no certificate, one from another CA, or a
    /// stalled handshake.
    Handshake,
    /// The node already had `max_connections` client connections (or handshakes).
    TooManyConnections,
    /// The source address already had its share of connections.
    TooManyFromAddress,
    /// A peer connection whose certificate (from the CA) names no member of the cluster (a
    /// former or foreign node's, or a client's).
    NotAMember,
    /// A protocol the node does not serve (the client protocol on a node without a handler).
    UnsupportedProtocol,
    /// A peer broke the protocol (bad frame, wrong hello): its connection was closed.
    ProtocolViolation,
    /// A newer connection from the same member replaced this one.
    Replaced,
    /// A client connection stayed idle for `idle_timeout`: closed.
    Idle,
    /// A request announced more than `max_request_bytes`: its stream was reset.
    RequestTooLarge,
    /// A request was malformed or ended early: its stream was reset.
    BadRequest,
    /// A request did not arrive whole within `read_timeout`: its stream was reset.
    ReadTimeout,
    /// The client budget could not take a request when its header arrived: its stream was
    /// reset (the client may retry).
    Busy,
    /// The answer was not written within `handler_timeout`: the stream was reset.
    HandlerTimeout,
    /// The response exceeded the frame limit, or the client budget could not hold it: the
    /// stream was reset.
    ResponseRefused,
}

impl Refusal {
    /// Every reason, in order.
    pub const ALL: [Refusal; 14] = [
        Self::Handshake,
        Self::TooManyConnections,
        Self::TooManyFromAddress,
        Self::NotAMember,
        Self::UnsupportedProtocol,
        Self::ProtocolViolation,
        Self::Replaced,
        Self::Idle,
        Self::RequestTooLarge,
        Self::BadRequest,
        Self::ReadTimeout,
        Self::Busy,
        Self::HandlerTimeout,
        Self::ResponseRefused,
    ];

    /// A stable snake_case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyFromAddress => "too_many_from_address",
            Self::NotAMember => "not_a_member",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::ProtocolViolation => "protocol_violation",
            Self::Replaced => "replaced",
            Self::Idle => "idle",
            Self::RequestTooLarge => "request_too_large",
            Self::BadRequest => "bad_request",
            Self::ReadTimeout => "read_timeout",
            Self::Busy => "busy",
            Self::HandlerTimeout => "handler_timeout",
            Self::ResponseRefused => "response_refused",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Handshake => "refused connection (TLS handshake failed)",
            Self::TooManyConnections => "refused connection: connection limit reached",
            Self::TooManyFromAddress => "refused connection: limit for its address reached",
            Self::NotAMember => "refused peer connection: its certificate names no member",
            Self::UnsupportedProtocol => "refused connection: protocol not served here",
            Self::ProtocolViolation => "bad peer stream; connection closed",
            Self::Replaced => "peer connection replaced by a newer one",
            Self::Idle => "idle client connection closed",
            Self::RequestTooLarge => "client request too large; stream reset",
            Self::BadRequest => "bad client request; stream reset",
            Self::ReadTimeout => "client request not received in time; stream reset",
            Self::Busy => "client budget spent; request refused",
            Self::HandlerTimeout => "client request not answered in time; stream reset",
            Self::ResponseRefused => "response too large for the limits; stream reset",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A snapshot of a node's counters, from [`QuicNode::stats`](crate::QuicNode::stats).
///
/// Counters only grow (from the node's start); the gauges are current values. `dropped` and
/// `refused` hold only the pairs that happened at least once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages accepted by `send`, per destination peer.
    pub sent: BTreeMap<NodeId, u64>,
    /// Bytes of the frames accepted by `send`, per destination peer.
    pub sent_bytes: BTreeMap<NodeId, u64>,
    /// Messages handed to `recv`, per sending peer.
    pub delivered: BTreeMap<NodeId, u64>,
    /// Messages dropped, per peer and reason.
    pub dropped: BTreeMap<(NodeId, DropReason), u64>,
    /// Connections, streams and requests refused or closed, per reason: with `Some(peer)` when
    /// the remote was identified as that member, `None` for clients and unidentified remotes.
    pub refused: BTreeMap<(Option<NodeId>, Refusal), u64>,
    /// Client requests answered.
    pub requests_served: u64,
    /// Gauge: incoming connections open or in their handshake (peers and clients).
    pub incoming_connections: usize,
    /// Gauge: bytes of the client budget in use (requests and responses held).
    pub client_bytes_held: usize,
}

/// One counter that also paces its warnings.
#[derive(Default)]
struct Counter {
    total: AtomicU64,
    /// `total` when the last warning was logged.
    reported: AtomicU64,
    /// Milliseconds since the counters' start before which no new warning is logged.
    next_report_ms: AtomicU64,
}

impl Counter {
    /// Counts one event. Returns `(since_last_warning, total)` when a warning is due.
    fn bump(&self, now_ms: u64, every_ms: u64) -> Option<(u64, u64)> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let next = self.next_report_ms.load(Ordering::Relaxed);
        if now_ms < next {
            return None;
        }
        // One thread wins the right to report this interval.
        self.next_report_ms
            .compare_exchange(next, now_ms + every_ms, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let before = self.reported.swap(total, Ordering::AcqRel);
        Some((total.saturating_sub(before), total))
    }

    fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

fn refusal_counters() -> Vec<Counter> {
    Refusal::ALL.iter().map(|_| Counter::default()).collect()
}

/// The counters of one member.
struct PeerCounters {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    delivered: AtomicU64,
    dropped: Vec<Counter>,
    refused: Vec<Counter>,
}

/// All of a node's counters, shared by its tasks.
pub(crate) struct Counters {
    me: NodeId,
    start: Instant,
    warn_every_ms: u64,
    peers: HashMap<NodeId, PeerCounters>,
    /// Refusals of clients and unidentified remotes.
    others: Vec<Counter>,
    requests_served: AtomicU64,
}

impl Counters {
    /// Counters for node `me` and its `peers`, warning at most once per `warn_every` per peer
    /// and reason.
    pub(crate) fn new(
        me: NodeId,
        peers: impl IntoIterator<Item = NodeId>,
        warn_every: Duration,
    ) -> Self {
        let peers = peers
            .into_iter()
            .map(|id| {
                let counters = PeerCounters {
                    sent: AtomicU64::new(0),
                    sent_bytes: AtomicU64::new(0),
                    delivered: AtomicU64::new(0),
                    dropped: DropReason::ALL.iter().map(|_| Counter::default()).collect(),
                    refused: refusal_counters(),
                };
                (id, counters)
            })
            .collect();
        Self {
            me,
            start: Instant::now(),
            warn_every_ms: u64::try_from(warn_every.as_millis()).unwrap_or(u64::MAX),
            peers,
            others: refusal_counters(),
            requests_served: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A message of `bytes` (framed) to `peer` was queued.
    pub(crate) fn sent(&self, peer: NodeId, bytes: usize) {
        if let Some(counters) = self.peers.get(&peer) {
            counters.sent.fetch_add(1, Ordering::Relaxed);
            counters
                .sent_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// A message from `peer` was handed to `recv`.
    pub(crate) fn delivered(&self, peer: NodeId) {
        if let Some(counters) = self.peers.get(&peer) {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A client request was answered.
    pub(crate) fn served(&self) {
        self.requests_served.fetch_add(1, Ordering::Relaxed);
    }

    /// A message to or from `peer` was dropped; `detail` is logged if a warning is due.
    pub(crate) fn dropped(&self, peer: NodeId, reason: DropReason, detail: &dyn Display) {
        let Some(counter) = self
            .peers
            .get(&peer)
            .and_then(|c| c.dropped.get(reason.index()))
        else {
            return;
        };
        if let Some((count, total)) = counter.bump(self.now_ms(), self.warn_every_ms) {
            warn!(
                node = self.me,
                peer,
                reason = reason.as_str(),
                count,
                total,
                %detail,
                "{}",
                reason.describe()
            );
        }
    }

    /// Something from `peer` (`None`: a client or unidentified remote) was refused or closed;
    /// `detail` is logged if a warning is due.
    pub(crate) fn refused(&self, peer: Option<NodeId>, reason: Refusal, detail: &dyn Display) {
        let counters = match peer.and_then(|id| self.peers.get(&id)) {
            Some(peer) => &peer.refused,
            None => &self.others,
        };
        let Some(counter) = counters.get(reason.index()) else {
            return;
        };
        if let Some((count, total)) = counter.bump(self.now_ms(), self.warn_every_ms) {
            warn!(
                node = self.me,
                peer,
                reason = reason.as_str(),
                count,
                total,
                %detail,
                "{}",
                reason.describe()
            );
        }
    }

    /// The counters as public stats (the gauges are left at zero for the caller to fill).
    pub(crate) fn snapshot(&self) -> TransportStats {
        let mut stats = TransportStats {
            requests_served: self.requests_served.load(Ordering::Relaxed),
            ..TransportStats::default()
        };
        let nonzero = |counter: &Counter| Some(counter.get()).filter(|&n| n > 0);
        for (&id, peer) in &self.peers {
            stats.sent.insert(id, peer.sent.load(Ordering::Relaxed));
            stats
                .sent_bytes
                .insert(id, peer.sent_bytes.load(Ordering::Relaxed));
            stats
                .delivered
                .insert(id, peer.delivered.load(Ordering::Relaxed));
            for (reason, counter) in DropReason::ALL.iter().zip(&peer.dropped) {
                if let Some(n) = nonzero(counter) {
                    stats.dropped.insert((id, *reason), n);
                }
            }
            for (reason, counter) in Refusal::ALL.iter().zip(&peer.refused) {
                if let Some(n) = nonzero(counter) {
                    stats.refused.insert((Some(id), *reason), n);
                }
            }
        }
        for (reason, counter) in Refusal::ALL.iter().zip(&self.others) {
            if let Some(n) = nonzero(counter) {
                stats.refused.insert((None, *reason), n);
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_reports_once_per_interval_with_the_count_since_the_last_report() {
        let counter = Counter::default();
        assert_eq!(counter.bump(0, 1000), Some((1, 1)));
        for now in 1..1000 {
            assert_eq!(counter.bump(now, 1000), None);
        }
        assert_eq!(counter.bump(1000, 1000), Some((1000, 1001)));
        assert_eq!(counter.bump(1500, 1000), None);
        assert_eq!(counter.bump(2500, 1000), Some((2, 1003)));
        assert_eq!(counter.get(), 1003);
    }

    #[test]
    fn every_reason_has_its_own_index_and_name() {
        for (k, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), k);
        }
        for (k, reason) in Refusal::ALL.iter().enumerate() {
            assert_eq!(reason.index(), k);
        }
        let mut names: Vec<_> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
        names.extend(DropReason::ALL.iter().map(|r| r.as_str()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn snapshots_count_per_peer_and_reason() {
        let counters = Counters::new(1, [2, 3], Duration::from_secs(10));
        for _ in 0..5 {
            counters.dropped(2, DropReason::InboundQueueFull, &"x");
        }
        counters.dropped(3, DropReason::Misaddressed, &"x");
        counters.dropped(9, DropReason::Misaddressed, &"not a member: ignored");
        counters.refused(Some(3), Refusal::ProtocolViolation, &"x");
        counters.refused(None, Refusal::Handshake, &"x");
        counters.refused(Some(9), Refusal::Handshake, &"unknown: counted as other");
        counters.sent(2, 10);
        counters.delivered(3);
        let stats = counters.snapshot();
        assert_eq!(
            stats.dropped,
            BTreeMap::from([
                ((2, DropReason::InboundQueueFull), 5),
                ((3, DropReason::Misaddressed), 1)
            ])
        );
        assert_eq!(
            stats.refused,
            BTreeMap::from([
                ((Some(3), Refusal::ProtocolViolation), 1),
                ((None, Refusal::Handshake), 2)
            ])
        );
        assert_eq!(stats.sent, BTreeMap::from([(2, 1), (3, 0)]));
        assert_eq!(stats.sent_bytes, BTreeMap::from([(2, 10), (3, 0)]));
        assert_eq!(stats.delivered, BTreeMap::from([(2, 0), (3, 1)]));
    }
}
