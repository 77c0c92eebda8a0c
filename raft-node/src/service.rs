//! [`Service`]: what runs beside a Raft node — its state machine and its clients' requests.

use raft_core::{Action, PersistUpdate, RaftNode};

/// The driver's id for a client request, unique within one run of a driver.
pub type RequestId = u64;

/// A replicated service: the state-machine lane of a [`RaftNode`] and the requests of its
/// clients. The [driver](crate::Node) owns the node and the service and calls these methods from
/// one task, so a service needs no locks; it is lent the node where it may propose, start reads
/// or compact.
///
/// The calls for one batch of inputs are: [`tick`](Self::tick) and
/// [`handle_request`](Self::handle_request) as inputs arrive; then, for the node's actions in
/// stream order, [`persisting`](Self::persisting) for each persist (before it is written) and
/// [`apply`](Self::apply) for each state-machine action; then [`settle`](Self::settle); then
/// [`take_replies`](Self::take_replies). The driver repeats the action pass while `settle`
/// gives the node more to do.
pub trait Service: Send + 'static {
    /// A client request, as the driver's [`NodeHandle::call`](crate::NodeHandle::call) takes it.
    type Request: Send + 'static;
    /// The answer to a request.
    type Reply: Send + 'static;

    /// The driver's clock ticked; `now_ms` is wall-clock milliseconds since the Unix epoch (it
    /// may step backwards; a service must not trust it for safety).
    fn tick(&mut self, _now_ms: u64) {}

    /// A client request with the driver's id for it; the answer comes out of
    /// [`take_replies`](Self::take_replies) with the same id, now or after later inputs.
    fn handle_request(
        &mut self,
        raft: &mut RaftNode,
        now_ms: u64,
        id: RequestId,
        request: Self::Request,
    );

    /// The node emitted this persist; the driver shows each one, in stream order, before it
    /// writes it.
    fn persisting(&mut self, _update: &PersistUpdate) {}

    /// Carries out one state-machine action (`Apply`, `InstallSnapshot`, `ReadReady`,
    /// `ReadFailed`), in stream order.
    fn apply(&mut self, raft: &mut RaftNode, action: Action);

    /// The end of an action pass: hand new reads to the node, snapshot, answer what a lost
    /// leadership orphaned.
    fn settle(&mut self, _raft: &mut RaftNode) {}

    /// The answers produced so far, by request id.
    fn take_replies(&mut self) -> Vec<(RequestId, Self::Reply)>;
}
