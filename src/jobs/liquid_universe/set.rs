//! The liquid set shared in-process: written by liquid_universe, read by
//! open_interest (no backend round trip). A leaf: the shared services hold
//! it without importing the job.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::rules::Member;

/// The current liquid set, shared with open_interest (no backend round trip).
#[derive(Debug, Clone, Default)]
pub struct LiquidSet {
    /// The set, swapped whole on each update so readers never see half of one.
    inner: Arc<RwLock<Arc<BTreeMap<String, Member>>>>,
}

impl LiquidSet {
    /// The set as of the last successful computation.
    pub fn get(&self) -> Arc<BTreeMap<String, Member>> {
        match self.inner.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the set.
    pub fn set(&self, set: BTreeMap<String, Member>) {
        let set = Arc::new(set);
        match self.inner.write() {
            Ok(mut current) => *current = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }
}
