//! The memory budget shared by every request whose body is being buffered.

use std::{
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

/// A cap on the bytes buffered by all in-flight requests together.
///
/// [`VerifySignatureLayer`](super::VerifySignatureLayer) must hold a body in memory until its
/// signature is checked. The per-request cap ([`max_body_size`]) bounds one request; this budget
/// bounds all of them, so a thousand slow uploads cannot exhaust memory. A request that would
/// exceed it is answered `503` with `Retry-After` (our own transient trouble, so retryable).
///
/// Bytes are counted from the moment they are received until the [`VerifiedBody`] handed to
/// the inner service is dropped. Clone a budget to share it between several layers.
///
/// ```
/// use hookgate::signature::BufferBudget;
///
/// let budget = BufferBudget::new(64 << 20);
/// assert_eq!(budget.capacity(), 64 << 20);
/// assert_eq!(budget.in_use(), 0);
/// ```
///
/// [`max_body_size`]: super::VerifySignatureLayer::max_body_size
/// [`VerifiedBody`]: super::VerifiedBody
#[derive(Clone)]
pub struct BufferBudget {
    state: Arc<State>,
}

struct State {
    capacity: usize,
    in_use: AtomicUsize,
}

impl BufferBudget {
    /// A budget of `capacity` bytes.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Arc::new(State {
                capacity,
                in_use: AtomicUsize::new(0),
            }),
        }
    }

    /// The most bytes that may be buffered at once.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.state.capacity
    }

    /// The bytes buffered right now (a gauge for metrics).
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.state.in_use.load(Ordering::Relaxed)
    }

    /// A permit holding nothing yet.
    pub(crate) fn permit(&self) -> BudgetPermit {
        BudgetPermit {
            budget: self.clone(),
            reserved: 0,
        }
    }

    fn try_take(&self, bytes: usize) -> bool {
        let capacity = self.state.capacity;
        self.state
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= capacity)
            })
            .is_ok()
    }
}

impl fmt::Debug for BufferBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferBudget")
            .field("capacity", &self.capacity())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// Bytes one request holds of a [`BufferBudget`], given back when dropped.
pub(crate) struct BudgetPermit {
    budget: BufferBudget,
    reserved: usize,
}

impl BudgetPermit {
    /// Makes the permit hold at least `total` bytes; `false` if the budget cannot grant them.
    pub(crate) fn cover(&mut self, total: usize) -> bool {
        if total <= self.reserved {
            return true;
        }
        let more = total - self.reserved;
        if self.budget.try_take(more) {
            self.reserved = total;
            true
        } else {
            false
        }
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.budget
                .state
                .in_use
                .fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetPermit")
            .field("reserved", &self.reserved)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_use_are_reported() {
        let budget = BufferBudget::new(100);
        assert_eq!(budget.capacity(), 100);
        let mut permit = budget.permit();
        assert!(permit.cover(30));
        assert_eq!(budget.in_use(), 30);
        assert_eq!(
            format!("{budget:?}"),
            "BufferBudget { capacity: 100, in_use: 30 }"
        );
        assert_eq!(format!("{permit:?}"), "BudgetPermit { reserved: 30 }");
    }

    #[test]
    fn permits_take_and_give_back() {
        let budget = BufferBudget::new(100);
        let mut a = budget.permit();
        assert!(a.cover(60));
        assert!(a.cover(40), "already covered");
        assert_eq!(budget.in_use(), 60);
        let mut b = budget.permit();
        assert!(!b.cover(41), "60 + 41 > 100");
        assert!(b.cover(40));
        assert_eq!(budget.in_use(), 100);
        drop(a);
        assert_eq!(budget.in_use(), 40);
        assert!(b.cover(100));
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn concurrent_permits_never_exceed_capacity() {
        let budget = BufferBudget::new(1000);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..1000 {
                        let mut p = budget.permit();
                        if p.cover(7) {
                            assert!(budget.in_use() <= 1000);
                            held.push(p);
                        }
                        if held.len() > 20 {
                            held.clear();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.in_use(), 0);
    }
}
