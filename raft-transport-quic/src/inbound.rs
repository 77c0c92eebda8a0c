//! The accepting side of a node: admission of connection attempts, the handshake under a
//! deadline, then either a member's connection (its messages go to the node's inbound queue)
//! or a client's (handed to the [`ClientService`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Message, NodeId};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::debug;

use crate::admission::{Admission, Decision, Slot};
use crate::frame::{self, PeerFrame};
use crate::rpc::ClientService;
use crate::stats::{Counters, DropReason, Refusal};
use crate::tls;

/// QUIC error codes this side closes connections with.
mod codes {
    /// The certificate names no member.
    pub const NOT_A_MEMBER: u32 = 2;
    /// The client protocol on a node without a client service.
    pub const NO_CLIENT_SERVICE: u32 = 3;
    /// Neither protocol.
    pub const UNKNOWN_PROTOCOL: u32 = 4;
    /// A peer broke the framing or the hello rules.
    pub const PROTOCOL_VIOLATION: u32 = 5;
    /// A newer connection from the same member took over.
    pub const REPLACED: u32 = 6;
}

/// What the accepting side needs, shared by its tasks.
pub(crate) struct Inbound {
    pub(crate) me: NodeId,
    pub(crate) peers: HashMap<NodeId, SocketAddr>,
    pub(crate) max_frame_bytes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) messages: mpsc::Sender<Message>,
    pub(crate) clients: Option<Arc<ClientService>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) admission: Arc<Admission>,
    /// The open connection of each member; a newer one replaces it.
    pub(crate) peer_connections: std::sync::Mutex<HashMap<NodeId, quinn::Connection>>,
}

impl Inbound {
    fn peer_connections(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, quinn::Connection>> {
        // Only inserted into and removed from; a panic cannot leave the map torn.
        self.peer_connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Accepts connection attempts until the endpoint closes.
pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, inbound: Arc<Inbound>) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let validated = incoming.remote_address_validated() || !incoming.may_retry();
        match inbound.admission.decide(remote, validated) {
            Decision::Admit(slot) => {
                let inbound = Arc::clone(&inbound);
                tokio::spawn(async move { handshake(incoming, slot, inbound).await });
            }
            Decision::Retry => {
                // `may_retry` was checked; a failure leaves nothing to clean up.
                let _ = incoming.retry();
            }
            Decision::Refuse(reason) => {
                inbound.counters.refused(None, reason, &remote);
                incoming.refuse();
            }
        }
    }
}

/// Completes the handshake within the deadline, then serves the connection; `slot` is held
/// until the connection ends.
async fn handshake(incoming: quinn::Incoming, slot: Slot, inbound: Arc<Inbound>) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            inbound
                .counters
                .refused(None, Refusal::Handshake, &format_args!("{remote}: {e}"));
            return;
        }
    };
    // Dropping an unfinished handshake abandons it.
    let connection = match tokio::time::timeout(inbound.handshake_timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            inbound
                .counters
                .refused(None, Refusal::Handshake, &format_args!("{remote}: {e}"));
            return;
        }
        Err(_) => {
            inbound.counters.refused(
                None,
                Refusal::Handshake,
                &format_args!(
                    "{remote}: not finished within {:?}",
                    inbound.handshake_timeout
                ),
            );
            return;
        }
    };
    match tls::negotiated_alpn(&connection).as_deref() {
        Some(tls::ALPN_PEER) => serve_peer(connection, inbound).await,
        Some(tls::ALPN_CLIENT) => match inbound.clients.clone() {
            Some(clients) => clients.serve(connection).await,
            None => {
                inbound.counters.refused(
                    None,
                    Refusal::UnsupportedProtocol,
                    &format_args!("{remote}: client protocol"),
                );
                connection.close(codes::NO_CLIENT_SERVICE.into(), b"no client service here");
            }
        },
        _ => {
            inbound
                .counters
                .refused(None, Refusal::UnsupportedProtocol, &remote);
            connection.close(codes::UNKNOWN_PROTOCOL.into(), b"unknown protocol");
        }
    }
    drop(slot);
}

/// The member that the leaf certificate of `connection` names, if exactly one.
fn member_of(connection: &quinn::Connection, inbound: &Inbound) -> Option<NodeId> {
    let certs: Vec<CertificateDer<'static>> = tls::peer_certificates(connection)?;
    let leaf = certs.first()?;
    let mut named = inbound
        .peers
        .keys()
        .filter(|&&id| tls::certificate_names_node(leaf, id));
    match (named.next(), named.next()) {
        (Some(&id), None) => Some(id),
        _ => None,
    }
}

/// Serves a member's connection: identifies the member from its certificate (or closes the
/// connection at once), then reads its streams.
async fn serve_peer(connection: quinn::Connection, inbound: Arc<Inbound>) {
    let remote = connection.remote_address();
    let Some(peer) = member_of(&connection, &inbound) else {
        inbound.counters.refused(None, Refusal::NotAMember, &remote);
        connection.close(codes::NOT_A_MEMBER.into(), b"not a member");
        return;
    };
    let replaced = inbound.peer_connections().insert(peer, connection.clone());
    if let Some(old) = replaced {
        inbound
            .counters
            .refused(Some(peer), Refusal::Replaced, &old.remote_address());
        old.close(codes::REPLACED.into(), b"replaced by a newer connection");
    }
    // Now that we know a member is on the line, give it its streams and window.
    connection.set_receive_window(tls::PEER_RECEIVE_WINDOW.into());
    connection.set_max_concurrent_uni_streams(tls::PEER_STREAMS.into());
    debug!(node = inbound.me, peer, %remote, "peer connected");
    while let Ok(stream) = connection.accept_uni().await {
        let (connection, inbound) = (connection.clone(), Arc::clone(&inbound));
        tokio::spawn(async move {
            if let Err(reason) = read_peer_stream(stream, peer, &inbound).await {
                inbound.counters.refused(
                    Some(peer),
                    Refusal::ProtocolViolation,
                    &format_args!("{}: {reason}", connection.remote_address()),
                );
                connection.close(codes::PROTOCOL_VIOLATION.into(), b"protocol violation");
            }
        });
    }
    let mut connections = inbound.peer_connections();
    if connections
        .get(&peer)
        .is_some_and(|c| c.stable_id() == connection.stable_id())
    {
        connections.remove(&peer);
    }
}

/// Reads one stream of member `peer`: a hello naming it, then messages from it to us.
/// Messages claiming another sender or receiver are dropped; a framing error ends the stream
/// (and the connection) since the stream cannot be resynced.
async fn read_peer_stream(
    mut stream: quinn::RecvStream,
    peer: NodeId,
    inbound: &Inbound,
) -> Result<(), String> {
    let max = inbound.max_frame_bytes;
    match frame::read::<PeerFrame>(&mut stream, max).await {
        Ok(Some(PeerFrame::Hello { node_id })) if node_id == peer => {}
        Ok(Some(PeerFrame::Hello { node_id })) => {
            return Err(format!(
                "hello from node {node_id} over node {peer}'s certificate"
            ))
        }
        Ok(Some(PeerFrame::Message(_))) => return Err("stream did not start with a hello".into()),
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("reading hello: {e}")),
    }
    loop {
        let message = match frame::read::<PeerFrame>(&mut stream, max).await {
            Ok(Some(PeerFrame::Message(message))) => message,
            Ok(Some(PeerFrame::Hello { .. })) => return Err("second hello on a stream".into()),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if message.from != peer || message.to != inbound.me {
            inbound.counters.dropped(
                peer,
                DropReason::Misaddressed,
                &format_args!("from {} to {}", message.from, message.to),
            );
            continue;
        }
        match inbound.messages.try_send(message) {
            Ok(()) => inbound.counters.delivered(peer),
            // The node is not keeping up (or shutting down): drop, as the network would.
            Err(_) => inbound.counters.dropped(
                peer,
                DropReason::InboundQueueFull,
                &format_args!("queue of {}", inbound.messages.max_capacity()),
            ),
        }
    }
}
