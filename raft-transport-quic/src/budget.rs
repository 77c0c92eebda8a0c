//! The client budget: bytes of requests and responses a node holds for all its clients
//! together. A request draws its announced length (beyond a small free allowance, so that
//! small requests never depend on it) when its header arrives, or is refused at once if the
//! budget cannot cover it; it keeps what it drew until its response is acknowledged. The
//! memory itself grows only with the bytes received.
//!
//! Refusing rather than waiting matters: a waiting request's bytes would sit unread in QUIC's
//! buffers, where they can cost far more memory than their size (a received datagram's buffer
//! is shared by everything it carried), and partly admitted requests could wait on each other
//! until their deadlines.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes every request may hold without drawing on the budget. Bounded in total by the
/// connection and per-connection request limits.
pub(crate) const FREE_BYTES: usize = 4096;

/// A node's client budget.
#[derive(Clone)]
pub(crate) struct Budget {
    semaphore: Arc<Semaphore>,
    capacity: usize,
}

impl Budget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: usize) -> Self {
        let capacity = bytes.min(Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Bytes drawn and not yet returned.
    pub(crate) fn held(&self) -> usize {
        self.capacity
            .saturating_sub(self.semaphore.available_permits())
    }

    /// A new, empty charge for one request.
    pub(crate) fn charge(&self) -> Charge {
        Charge {
            semaphore: Arc::clone(&self.semaphore),
            permit: None,
        }
    }
}

/// What one request has drawn; returned to the budget when dropped.
pub(crate) struct Charge {
    semaphore: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes the charge covers: the free allowance and what it drew.
    pub(crate) fn covered(&self) -> usize {
        FREE_BYTES + self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Draws what is missing to cover `bytes` if the budget has it now.
    pub(crate) fn try_cover(&mut self, bytes: usize) -> bool {
        let Some(missing) = self.missing(bytes) else {
            return true;
        };
        match Arc::clone(&self.semaphore).try_acquire_many_owned(missing) {
            Ok(permit) => {
                self.add(permit);
                true
            }
            Err(_) => false,
        }
    }

    fn missing(&self, bytes: usize) -> Option<u32> {
        let missing = bytes.checked_sub(self.covered()).filter(|&n| n > 0)?;
        // Frames are at most 4 GiB; a larger amount could never be drawn anyway.
        Some(u32::try_from(missing).unwrap_or(u32::MAX))
    }

    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match self.permit.as_mut() {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_draw_beyond_the_free_allowance_and_return_on_drop() {
        let budget = Budget::new(10_000);
        let mut a = budget.charge();
        assert!(a.try_cover(FREE_BYTES));
        assert_eq!(budget.held(), 0, "the free allowance draws nothing");
        assert!(a.try_cover(FREE_BYTES + 6_000));
        assert_eq!(budget.held(), 6_000);
        assert_eq!(a.covered(), FREE_BYTES + 6_000);
        let mut b = budget.charge();
        assert!(b.try_cover(FREE_BYTES + 4_000));
        assert!(!b.try_cover(FREE_BYTES + 4_001), "over budget");
        assert_eq!(budget.held(), 10_000);
        drop(a);
        assert_eq!(budget.held(), 4_000);
        assert!(b.try_cover(FREE_BYTES + 10_000));
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
