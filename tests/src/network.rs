//! The simulated network: fault rates, connectivity and traffic counters.

use raft_core::rng::SplitMix64;

/// How the simulated network treats each message.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice (each copy with its own delay).
    pub duplicate_rate: f64,
    /// Delivery delay range in simulated milliseconds, inclusive.
    pub delay_ms: (u64, u64),
    /// Long reordering: with probability 2/3 a *response* is held back a further 200-2199 ms,
    /// skewed toward short holds, as the labs' `longReordering` holds back replies. Requests are
    /// not held back: with both legs of every round trip delayed that long, no election
    /// timeout of a few hundred milliseconds could ever complete an election.
    pub long_reordering: bool,
    /// Probability that any message, request or response, is held back a further 200-2199 ms
    /// (on top of `long_reordering`, which holds back responses only). A rate of a few percent
    /// keeps elections possible while old requests keep arriving long after they were sent.
    pub long_delay_rate: f64,
    /// Probability, at each send, that the network also delivers a copy of a random earlier
    /// message of the run (from the simulator's record, which includes messages sent by
    /// earlier incarnations of restarted nodes), as a network that keeps packets for a long
    /// time would.
    pub replay_rate: f64,
}

impl NetConfig {
    /// A network that loses nothing, with loopback-like delays of 0-2 ms.
    pub fn reliable() -> Self {
        Self {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            delay_ms: (0, 2),
            long_reordering: false,
            long_delay_rate: 0.0,
            replay_rate: 0.0,
        }
    }

    /// The labs' unreliable network, made harsher: 10% loss and 0-26 ms delay per message (the
    /// labs lose 10% of requests and 10% of replies), plus 2% duplication, which labrpc never does.
    pub fn unreliable() -> Self {
        Self {
            drop_rate: 0.1,
            duplicate_rate: 0.02,
            delay_ms: (0, 26),
            long_reordering: false,
            long_delay_rate: 0.0,
            replay_rate: 0.0,
        }
    }

    /// Draws the delivery delays of one message (a request or a response): empty when it is
    /// lost, two when duplicated.
    pub(crate) fn delays(&self, rng: &mut SplitMix64, is_request: bool) -> Vec<u64> {
        if rng.chance(self.drop_rate) {
            return Vec::new();
        }
        let copies = if rng.chance(self.duplicate_rate) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = rng.range(self.delay_ms.0, self.delay_ms.1 + 1);
                if self.long_reordering && !is_request && rng.chance(2.0 / 3.0) {
                    delay += long_hold(rng);
                }
                if rng.chance(self.long_delay_rate) {
                    delay += long_hold(rng);
                }
                delay
            })
            .collect()
    }
}

/// A hold of 200-2199 ms, skewed toward short holds (the labs' long reordering).
fn long_hold(rng: &mut SplitMix64) -> u64 {
    let spread = rng.range(0, 2000);
    200 + rng.range(0, spread + 1)
}

/// Which links work: a node can be disconnected entirely, connected nodes can be split into
/// partition groups, and single links can be cut in one direction only (a node that can send
/// but not receive, or the reverse). A message passes only between two connected nodes of the
/// same group over a link that is not cut, both when it is sent and when it arrives.
#[derive(Clone, Debug)]
pub struct Topology {
    connected: Vec<bool>,
    group: Vec<u32>,
    /// `cut[from * n + to]`: the link from `from` to `to` is cut (one way).
    cut: Vec<bool>,
}

impl Topology {
    /// Every node connected to every other.
    pub fn full(nodes: usize) -> Self {
        Self {
            connected: vec![true; nodes],
            group: vec![0; nodes],
            cut: vec![false; nodes * nodes],
        }
    }

    /// Whether a message can pass from `a` to `b` (0-based slots).
    pub fn link_ok(&self, a: usize, b: usize) -> bool {
        self.connected[a]
            && self.connected[b]
            && self.group[a] == self.group[b]
            && !self.cut[a * self.connected.len() + b]
    }

    /// Cuts (or restores) the link from `from` to `to` in that direction only.
    pub fn set_one_way_cut(&mut self, from: usize, to: usize, cut: bool) {
        let n = self.connected.len();
        self.cut[from * n + to] = cut;
    }

    /// Number of links cut one way.
    pub fn one_way_cuts(&self) -> usize {
        self.cut.iter().filter(|&&c| c).count()
    }

    /// Whether node `i` is connected.
    pub fn is_connected(&self, i: usize) -> bool {
        self.connected[i]
    }

    /// Cuts node `i` off from everyone.
    pub fn disconnect(&mut self, i: usize) {
        self.connected[i] = false;
    }

    /// Reconnects node `i` (to the nodes of its partition group).
    pub fn connect(&mut self, i: usize) {
        self.connected[i] = true;
    }

    /// Splits the nodes into groups: `groups[k]` lists the slots of group `k`. Nodes not listed
    /// form a group of their own. Connection flags are left as they are.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let alone = groups.len() as u32;
        self.group.iter_mut().for_each(|g| *g = alone);
        for (k, members) in groups.iter().enumerate() {
            for &i in members {
                self.group[i] = k as u32;
            }
        }
    }

    /// Heals every partition, restores every one-way cut and reconnects every node.
    pub fn heal(&mut self) {
        self.connected.iter_mut().for_each(|c| *c = true);
        self.group.iter_mut().for_each(|g| *g = 0);
        self.cut.iter_mut().for_each(|c| *c = false);
    }
}

/// Traffic counters, as the labs keep them.
#[derive(Clone, Debug, Default)]
pub struct NetStats {
    /// Messages handed to the network, whether or not they were delivered.
    pub messages_sent: u64,
    /// Encoded (postcard) bytes of those messages.
    pub bytes_sent: u64,
    /// Per node: requests (RequestVote, AppendEntries) that reached it, like labrpc's
    /// per-server count.
    pub requests_received: Vec<u64>,
}

impl NetStats {
    /// Total requests received by all nodes.
    pub fn total_requests_received(&self) -> u64 {
        self.requests_received.iter().sum()
    }
}
