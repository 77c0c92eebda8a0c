//! The storage lane: persists in stream order, a backlog folded into one write and one fsync.

use std::sync::Arc;
use std::time::Instant;

use raft_core::{PersistId, PersistUpdate, Persister};
use tokio::sync::mpsc;
use tracing::{error, trace};

use crate::merge::fold;
use crate::metrics;

/// The storage lane's report: the id of the latest persist that is durable, or the first
/// failure (after which the lane writes nothing more).
pub type Durable = Result<PersistId, String>;

/// Runs the storage lane until `updates` closes and everything queued is written: takes every
/// update waiting, folds consecutive ones, writes them in order, then reports the last id
/// durable. Stops at the first failure, which it reports.
pub async fn run<P: Persister + ?Sized>(
    persister: Arc<P>,
    mut updates: mpsc::UnboundedReceiver<PersistUpdate>,
    durable: mpsc::UnboundedSender<Durable>,
) {
    let mut backlog = Vec::new();
    while updates.recv_many(&mut backlog, usize::MAX).await > 0 {
        let count = backlog.len();
        let mut writes: Vec<PersistUpdate> = Vec::with_capacity(1);
        for update in backlog.drain(..) {
            let next = match writes.last_mut() {
                Some(last) => fold(last, update),
                None => Err(update),
            };
            if let Err(update) = next {
                writes.push(update);
            }
        }
        metrics::persist_batch(count, writes.len());
        for write in &writes {
            let started = Instant::now();
            if let Err(e) = persister.persist(write).await {
                error!(error = %e, id = write.id, "persist failed; the node stops");
                let _ = durable.send(Err(e.to_string()));
                return;
            }
            metrics::fsync(started.elapsed());
            trace!(id = write.id, entries = write.entries.len(), "durable");
        }
        if let Some(last) = writes.last() {
            if durable.send(Ok(last.id)).is_err() {
                return; // the driver is gone; nothing waits for the news
            }
        }
    }
}
