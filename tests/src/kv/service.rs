//! [`KvSimService`]: the real KV service ([`kv_service::KvService`]) hosted by the simulator.

use std::any::Any;

use kv_service::{codec, ClientRequest, KvError, KvService, Reply, ServiceConfig};
use raft_core::{Action, DurableState, LogIndex, NodeId, PersistUpdate, RaftNode};

use crate::service::{ServiceFactory, SimService};
use crate::sim::Millis;

/// The KV service on one simulated node. Requests and replies cross the simulated network as
/// bytes in the service's own codec, as they do over QUIC.
#[derive(Debug)]
pub struct KvSimService {
    service: KvService,
    /// Answers to requests that could not be decoded.
    refused: Vec<(u64, Reply)>,
}

impl KvSimService {
    /// The factory of KV services configured like `template`, whose Raft part the simulator's
    /// node configuration replaces (`raft` with each node's id; the simulator sets the rest).
    pub fn factory(template: ServiceConfig, raft: raft_core::Config) -> ServiceFactory {
        Box::new(move |id: NodeId, disk: &DurableState| {
            let mut config = template.clone();
            config.raft = raft.clone();
            config.raft.id = id;
            let service = KvService::restore(config, disk).map_err(|e| e.to_string())?;
            Ok(Box::new(KvSimService {
                service,
                refused: Vec::new(),
            }) as Box<dyn SimService>)
        })
    }

    /// The service logic.
    pub fn service(&self) -> &KvService {
        &self.service
    }
}

impl SimService for KvSimService {
    fn request(&mut self, node: &mut RaftNode, now: Millis, id: u64, request: Vec<u8>) {
        match codec::decode::<ClientRequest>(&request) {
            Ok(request) => self.service.handle_request(node, now, id, request),
            Err(error) => self.refused.push((id, Err(KvError::Codec(error)))),
        }
    }

    fn tick(&mut self, now: Millis) {
        self.service.tick(now);
    }

    fn persisting(&mut self, update: &PersistUpdate) {
        self.service.persisting(update);
    }

    fn run(&mut self, _node: &mut RaftNode, action: Action) -> Result<(), String> {
        self.service.run(action);
        Ok(())
    }

    fn settle(&mut self, node: &mut RaftNode) {
        self.service.settle(node);
    }

    fn take_replies(&mut self) -> Vec<(u64, Vec<u8>)> {
        let mut replies: Vec<(u64, Vec<u8>)> = self
            .refused
            .drain(..)
            .map(|(id, reply)| (id, codec::encode(&reply)))
            .collect();
        replies.extend(
            self.service
                .take_replies()
                .into_iter()
                .map(|(id, reply)| (id, codec::encode(&reply))),
        );
        replies
    }

    fn applied_index(&self) -> LogIndex {
        self.service.machine().applied_index()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
