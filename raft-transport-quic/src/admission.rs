//! Admission of incoming connections, decided before any handshake work: limits in total and
//! per source address for everyone but the members, a small reserve per member address, and
//! address validation (a QUIC retry) where a spoofed source could take someone else's slot.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::limits::ClientLimits;
use crate::stats::Refusal;

/// Connections (open or handshaking) kept for each member's configured address. A member
/// needs one; the rest covers a reconnection racing the old connection's close.
pub(crate) const MEMBER_ADDRESS_SLOTS: usize = 4;

/// What to do with an incoming connection attempt.
pub(crate) enum Decision {
    /// Go ahead; the slot is held until the connection ends.
    Admit(Slot),
    /// Ask the client to prove it owns its source address first (a QUIC retry).
    Retry,
    /// Refuse at once.
    Refuse(Refusal),
}

/// Who a slot is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Member(SocketAddr),
    /// A client's source: an IPv4 address, or an IPv6 /64 prefix.
    Other(IpAddr),
}

#[derive(Default)]
struct Counts {
    others: usize,
    per_key: HashMap<Key, usize>,
}

/// The admission state of one endpoint.
pub(crate) struct Admission {
    max_others: usize,
    max_per_ip: usize,
    members: HashSet<SocketAddr>,
    counts: Mutex<Counts>,
}

/// An admitted connection's place; dropping it frees the place.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        if let Key::Other(_) = self.key {
            counts.others = counts.others.saturating_sub(1);
        }
        if let Some(n) = counts.per_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_key.remove(&self.key);
            }
        }
    }
}

/// The address an attacker controls as a unit: one IPv4 address, or one IPv6 /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

impl Admission {
    /// Admission for an endpoint whose members live at `members`.
    pub(crate) fn new(
        limits: &ClientLimits,
        members: impl IntoIterator<Item = SocketAddr>,
    ) -> Self {
        Self {
            max_others: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            members: members.into_iter().collect(),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counts are updated in single statements; a panic cannot leave them torn.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides on an attempt from `remote`; `validated` when the remote already proved its
    /// address (or can no longer be asked to).
    pub(crate) fn decide(self: &Arc<Self>, remote: SocketAddr, validated: bool) -> Decision {
        let member = self.members.contains(&remote);
        let key = if member {
            Key::Member(remote)
        } else {
            Key::Other(source_key(remote.ip()))
        };
        let mut counts = self.lock();
        let here = counts.per_key.get(&key).copied().unwrap_or(0);
        if member {
            // A spoofed member address must not take the member's reserve.
            if !validated {
                return Decision::Retry;
            }
            if here >= MEMBER_ADDRESS_SLOTS {
                return Decision::Refuse(Refusal::TooManyFromAddress);
            }
        } else {
            if counts.others >= self.max_others {
                return Decision::Refuse(Refusal::TooManyConnections);
            }
            if here >= self.max_per_ip {
                return Decision::Refuse(Refusal::TooManyFromAddress);
            }
            // Once half the places are taken, spoofed sources (which cannot answer a retry)
            // must not take the rest.
            if !validated && counts.others * 2 >= self.max_others {
                return Decision::Retry;
            }
            counts.others += 1;
        }
        counts.per_key.insert(key, here + 1);
        Decision::Admit(Slot {
            admission: Arc::clone(self),
            key,
        })
    }

    /// Connections admitted and not yet ended.
    pub(crate) fn open(&self) -> usize {
        self.lock().per_key.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ClientLimits {
        ClientLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..ClientLimits::default()
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn admitted(decision: Decision) -> Slot {
        match decision {
            Decision::Admit(slot) => slot,
            Decision::Retry => panic!("retry"),
            Decision::Refuse(reason) => panic!("refused: {reason:?}"),
        }
    }

    fn refusal(decision: Decision) -> Option<Refusal> {
        match decision {
            Decision::Refuse(reason) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn limits_per_address_and_in_total_and_frees_slots_on_drop() {
        let admission = Arc::new(Admission::new(&limits(3, 2), []));
        let a1 = admitted(admission.decide(addr("10.0.0.1:1"), true));
        let _a2 = admitted(admission.decide(addr("10.0.0.1:2"), true));
        assert_eq!(
            refusal(admission.decide(addr("10.0.0.1:3"), true)),
            Some(Refusal::TooManyFromAddress)
        );
        let _b1 = admitted(admission.decide(addr("10.0.0.2:1"), true));
        assert_eq!(
            refusal(admission.decide(addr("10.0.0.3:1"), true)),
            Some(Refusal::TooManyConnections)
        );
        assert_eq!(admission.open(), 3);
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _a3 = admitted(admission.decide(addr("10.0.0.1:4"), true));
    }

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let admission = Arc::new(Admission::new(&limits(10, 1), []));
        let _a = admitted(admission.decide(addr("[2001:db8::1]:1"), true));
        assert!(refusal(admission.decide(addr("[2001:db8::ffff:2]:1"), true)).is_some());
        let _b = admitted(admission.decide(addr("[2001:db8:0:1::1]:1"), true));
        let _c = admitted(admission.decide(addr("10.0.0.1:1"), true));
        assert!(refusal(admission.decide(addr("[::ffff:10.0.0.1]:2"), true)).is_some());
    }

    #[test]
    fn members_have_a_validated_reserve_that_clients_cannot_take() {
        let member = addr("10.0.0.9:7000");
        let admission = Arc::new(Admission::new(&limits(1, 1), [member]));
        let _client = admitted(admission.decide(addr("10.0.0.9:5000"), true));
        assert!(refusal(admission.decide(addr("10.0.0.8:1"), true)).is_some());
        // The member's address is full of clients' IP, yet it gets in, once validated.
        assert!(matches!(admission.decide(member, false), Decision::Retry));
        let slots: Vec<_> = (0..MEMBER_ADDRESS_SLOTS)
            .map(|_| admitted(admission.decide(member, true)))
            .collect();
        assert_eq!(
            refusal(admission.decide(member, true)),
            Some(Refusal::TooManyFromAddress)
        );
        drop(slots);
        let _again = admitted(admission.decide(member, true));
    }

    #[test]
    fn unvalidated_sources_retry_once_half_the_places_are_taken() {
        let admission = Arc::new(Admission::new(&limits(4, 4), []));
        let _a = admitted(admission.decide(addr("10.0.0.1:1"), false));
        assert!(matches!(
            admission.decide(addr("10.0.0.2:1"), false),
            Decision::Admit(_)
        ));
        // That slot was dropped at once: one taken. Take a second, then unvalidated must retry.
        let _b = admitted(admission.decide(addr("10.0.0.2:1"), false));
        assert!(matches!(
            admission.decide(addr("10.0.0.3:1"), false),
            Decision::Retry
        ));
        let _c = admitted(admission.decide(addr("10.0.0.3:1"), true));
    }
}
