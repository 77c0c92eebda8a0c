//! Client sessions (Raft thesis §6.3): the replies a client may still ask for, and when each
//! session was last active, by the log's clock.
//!
//! Rules (all driven by the log, so every replica agrees):
//! - A session is active at the stamp of the last entry that named it; it **expires** once an
//!   entry is applied whose stamp is more than the session timeout after that.
//! - The table holds at most `max_sessions` sessions. Registering one more first evicts the least
//!   recently active session: the smallest `(last active stamp, id)`, so ties go to the older
//!   session.
//! - Each session keeps the replies of the sequences at or above its lowest unacknowledged
//!   sequence (the highest `lowest_unacked` any of its requests carried); executed sequences
//!   stay within a window above it, so a session holds at most `window` replies.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::protocol::{Seq, SessionId, WriteOutput};

/// One client's session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Stamp of the last entry that named the session.
    pub last_active_ms: u64,
    /// Every sequence below this was acknowledged by the client: never executed again, and its
    /// reply forgotten.
    pub lowest_unacked: Seq,
    /// Replies of the executed sequences at or above `lowest_unacked`.
    pub replies: BTreeMap<Seq, WriteOutput>,
}

/// Every session, with an index by last activity for expiry and eviction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: BTreeMap<SessionId, Session>,
    /// `(last_active_ms, id)` of every session: the first is the least recently active.
    by_activity: BTreeSet<(u64, SessionId)>,
}

impl SessionTable {
    /// Rebuilds a table (and its activity index) from its sessions.
    pub fn from_sessions(sessions: BTreeMap<SessionId, Session>) -> Self {
        let by_activity = sessions
            .iter()
            .map(|(&id, s)| (s.last_active_ms, id))
            .collect();
        Self {
            sessions,
            by_activity,
        }
    }

    /// The sessions, by id.
    pub fn sessions(&self) -> &BTreeMap<SessionId, Session> {
        &self.sessions
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session `id`, if it exists.
    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Removes every session inactive for more than `timeout_ms` at log time `now_ms`; returns
    /// their ids.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<SessionId> {
        let mut expired = Vec::new();
        while let Some(&(last, id)) = self.by_activity.first() {
            if now_ms.saturating_sub(last) <= timeout_ms {
                break;
            }
            self.by_activity.pop_first();
            self.sessions.remove(&id);
            expired.push(id);
        }
        expired
    }

    /// Opens session `id` at log time `now_ms`, first evicting the least recently active
    /// sessions so that at most `max_sessions` remain. Returns the evicted ids.
    pub fn register(&mut self, id: SessionId, now_ms: u64, max_sessions: usize) -> Vec<SessionId> {
        let mut evicted = Vec::new();
        while self.sessions.len() >= max_sessions.max(1) {
            let Some((_, oldest)) = self.by_activity.pop_first() else {
                break;
            };
            self.sessions.remove(&oldest);
            evicted.push(oldest);
        }
        if let Some(previous) = self.sessions.insert(
            id,
            Session {
                last_active_ms: now_ms,
                ..Session::default()
            },
        ) {
            // Ids are log indexes, each applied once; kept consistent all the same.
            self.by_activity.remove(&(previous.last_active_ms, id));
        }
        self.by_activity.insert((now_ms, id));
        evicted
    }

    /// Marks session `id` active at `now_ms` and returns it, or `None` if it does not exist.
    pub fn touch(&mut self, id: SessionId, now_ms: u64) -> Option<&mut Session> {
        let session = self.sessions.get_mut(&id)?;
        self.by_activity.remove(&(session.last_active_ms, id));
        session.last_active_ms = session.last_active_ms.max(now_ms);
        self.by_activity.insert((session.last_active_ms, id));
        Some(session)
    }
}

impl Session {
    /// Raises the lowest unacknowledged sequence to `lowest` (it never decreases) and forgets
    /// the replies below it.
    pub fn acknowledge_below(&mut self, lowest: Seq) {
        if lowest > self.lowest_unacked {
            self.lowest_unacked = lowest;
            self.replies = self.replies.split_off(&lowest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        let mut table = SessionTable::default();
        table.register(1, 100, 10);
        table.register(2, 150, 10);
        assert!(table.expire(200, 100).is_empty(), "exactly the timeout");
        assert_eq!(table.expire(201, 100), vec![1]);
        assert!(table.touch(2, 240).is_some());
        assert!(
            table.expire(300, 100).is_empty(),
            "touch refreshed session 2"
        );
        assert_eq!(table.expire(341, 100), vec![2]);
        assert!(table.is_empty());
    }

    #[test]
    fn eviction_takes_the_least_recently_active_then_the_lowest_id() {
        let mut table = SessionTable::default();
        table.register(5, 10, 3);
        table.register(3, 10, 3);
        table.register(9, 20, 3);
        table.touch(5, 30);
        // Session 3 (stamp 10) is the least recently active.
        assert_eq!(table.register(12, 40, 3), vec![3]);
        // Sessions 9 (20), 5 (30), 12 (40): 9 goes.
        assert_eq!(table.register(13, 40, 3), vec![9]);
        // 5 (30) goes, then 12 and 13 tie at 40: the lower id goes first.
        assert_eq!(table.register(14, 40, 2), vec![5, 12]);
        assert_eq!(
            table.sessions().keys().copied().collect::<Vec<_>>(),
            vec![13, 14]
        );
    }

    #[test]
    fn acknowledging_prunes_replies_below_and_never_goes_back() {
        let mut s = Session::default();
        for seq in 1..=5 {
            s.replies.insert(seq, WriteOutput::Done);
        }
        s.acknowledge_below(3);
        assert_eq!(s.replies.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        s.acknowledge_below(2);
        assert_eq!(s.lowest_unacked, 3);
        assert_eq!(s.replies.len(), 3);
    }

    #[test]
    fn rebuilt_index_matches() {
        let mut table = SessionTable::default();
        table.register(1, 5, 10);
        table.register(2, 7, 10);
        table.touch(1, 9);
        let rebuilt = SessionTable::from_sessions(table.sessions().clone());
        assert_eq!(rebuilt, table);
    }
}
