//! How many volume alerts went out without `oiChange` since start, and
//! why: the hour-start lookup did not finish within the tick's budget, or
//! the backend's snapshot was too far from the hour start. The job's
//! summary line names them per tick; these totals are for `/metrics`.
//! Process-wide counters: one volume_spike job per process.

use std::sync::atomic::{AtomicU64, Ordering};

/// Lookups still running at the tick's deadline, since start.
static PAST_BUDGET: AtomicU64 = AtomicU64::new(0);
/// Snapshots not used because of their distance from the hour start.
static STALE: AtomicU64 = AtomicU64::new(0);

/// The totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OiChangeOmissions {
    /// Alerts whose lookup did not finish within the tick's budget.
    pub past_budget: u64,
    /// Alerts whose hour-start snapshot was stale.
    pub stale_snapshot: u64,
}

/// Adds one tick's omissions.
pub(crate) fn record(past_budget: usize, stale_snapshot: usize) {
    PAST_BUDGET.fetch_add(past_budget as u64, Ordering::Relaxed);
    STALE.fetch_add(stale_snapshot as u64, Ordering::Relaxed);
}

/// The totals since start.
pub fn totals() -> OiChangeOmissions {
    OiChangeOmissions {
        past_budget: PAST_BUDGET.load(Ordering::Relaxed),
        stale_snapshot: STALE.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_adds_to_the_totals() {
        let before = totals();
        record(3, 1);
        let after = totals();
        // Other tests of this process may add too: at least ours.
        assert!(after.past_budget >= before.past_budget + 3);
        assert!(after.stale_snapshot > before.stale_snapshot);
    }
}
