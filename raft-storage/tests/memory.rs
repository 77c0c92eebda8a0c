//! A node on top of the memory backend: it restarts from what the backend acknowledged. (The
//! backend's own conformance, shared with RocksDB, is in `conformance.rs`.)

use raft_core::Persister;
use raft_storage::MemoryPersister;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn a_node_restarts_from_what_was_acknowledged() {
    use raft_core::{Action, Config, RaftNode};
    let disk = MemoryPersister::new();
    let mut config = Config::new(1, vec![1]);
    config.pre_vote = false;
    let mut node = RaftNode::new(config.clone()).unwrap();
    for _ in 0..config.election_timeout_max {
        node.tick();
    }
    node.propose(b"kept".to_vec()).unwrap();
    for action in node.take_actions() {
        if let Action::Persist(update) = action {
            block_on(disk.persist(&update)).unwrap();
        }
    }
    drop(node); // crash
    let restarted = RaftNode::restore(config, &block_on(disk.load()).unwrap()).unwrap();
    assert_eq!(restarted.term(), 1);
    assert_eq!(
        restarted.log().entry(2).and_then(|e| e.command()),
        Some(&b"kept"[..])
    );
}
