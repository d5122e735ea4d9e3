//! Connections waiting on their client, oldest first: for its request head,
//! or for it to read its reply. These are the ones a new connection may push
//! out when the server is at its connection cap.
//!
//! A client that connects and sends nothing (or a byte a minute), or asks
//! and never reads, holds a slot only until someone needs it: a new
//! connection at the cap evicts the oldest such connection, so a flood of
//! slow clients cannot lock out a monitor asking `/health`, which sends its
//! head at once and reads its reply.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The waiting connections by id (ids grow, so the first is the oldest),
/// each with the sender that tells it to close.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdleSet {
    waiting: Arc<Mutex<BTreeMap<u64, oneshot::Sender<()>>>>,
}

impl IdleSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, oneshot::Sender<()>>> {
        match self.waiting.lock() {
            Ok(waiting) => waiting,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Marks connection `id` as waiting on its client; the receiver fires if
    /// it is evicted.
    pub fn enter(&self, id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Connection `id` no longer waits on its client (or ended).
    pub fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Tells the connection waiting longest to close; false when none waits.
    pub fn evict_oldest(&self) -> bool {
        let oldest = self.lock().pop_first();
        match oldest {
            // A receiver already gone means that connection is ending anyway.
            Some((_, tx)) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }

    /// Connections waiting now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_is_evicted_first() {
        let idle = IdleSet::default();
        let mut first = idle.enter(1);
        let mut second = idle.enter(2);
        let mut third = idle.enter(3);
        idle.leave(1);
        assert!(idle.evict_oldest());
        assert!(second.try_recv().is_ok(), "2 was the oldest still waiting");
        assert!(third.try_recv().is_err());
        assert!(first.try_recv().is_err(), "1 left before the eviction");
        assert_eq!(idle.len(), 1);
        assert!(idle.evict_oldest());
        assert!(!idle.evict_oldest(), "nobody left to evict");
    }
}
