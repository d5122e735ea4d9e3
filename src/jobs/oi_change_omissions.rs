//! How many volume alerts went out without `oiChange` since start, and
//! why: the hour-start lookup did not finish within the tick's budget, or
//! the backend's snapshot was too far from the hour start. The job's
//! summary line names them per tick; these totals are for `/metrics`.
//! The counters are made once with the shared services and handed to the
//! volume job (which adds) and the HTTP context (which reads): no global.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OiChangeOmissions {
    /// Alerts whose lookup did not finish within the tick's budget.
    pub past_budget: u64,
    /// Alerts whose hour-start snapshot was stale.
    pub stale_snapshot: u64,
}

/// The running counters, shared by the volume job and `/metrics`; cheap to
/// clone (every clone counts into the same totals).
#[derive(Debug, Clone, Default)]
pub struct OiChangeOmissionCounters {
    /// The counts every clone shares.
    inner: Arc<Counters>,
}

/// The atomics behind [`OiChangeOmissionCounters`].
#[derive(Debug, Default)]
struct Counters {
    /// Lookups still running at the tick's deadline, since start.
    past_budget: AtomicU64,
    /// Snapshots not used because of their distance from the hour start.
    stale_snapshot: AtomicU64,
}

impl OiChangeOmissionCounters {
    /// Adds one tick's omissions.
    pub(crate) fn record(&self, past_budget: usize, stale_snapshot: usize) {
        let c = &self.inner;
        c.past_budget
            .fetch_add(past_budget as u64, Ordering::Relaxed);
        c.stale_snapshot
            .fetch_add(stale_snapshot as u64, Ordering::Relaxed);
    }

    /// The totals since start.
    pub fn totals(&self) -> OiChangeOmissions {
        OiChangeOmissions {
            past_budget: self.inner.past_budget.load(Ordering::Relaxed),
            stale_snapshot: self.inner.stale_snapshot.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_adds_to_the_totals() {
        let counters = OiChangeOmissionCounters::default();
        let before = counters.totals();
        counters.clone().record(3, 1);
        let after = counters.totals();
        // Other tests of this process may add too: at least ours.
        assert!(after.past_budget >= before.past_budget + 3);
        assert!(after.stale_snapshot > before.stale_snapshot);
    }
}
