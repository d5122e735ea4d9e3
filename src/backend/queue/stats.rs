//! What `/health` and `/metrics` read of a queue: counters since start,
//! the backlog, and the condition that holds delivery back. Plain data.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters since start, the backlog, and what holds delivery back, for `/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Posts waiting.
    pub pending: usize,
    /// Age in seconds of the oldest waiting post; `None` when empty.
    pub oldest_pending_seconds: Option<u64>,
    /// When the oldest waiting post was enqueued, unix ms; `None` when
    /// empty (`/metrics` exports it as a timestamp).
    #[serde(skip)]
    pub oldest_pending_enqueued_ms: Option<u64>,
    /// Posts the backend accepted (2xx).
    pub delivered: u64,
    /// Posts the backend accepted (2xx) by kind name (kinds never
    /// delivered are absent): `/metrics` counts delivered alerts by type.
    #[serde(skip)]
    pub delivered_by_kind: BTreeMap<&'static str, u64>,
    /// Failed attempts that will be retried (network, timeout, 5xx, 429).
    pub retried: u64,
    /// Posts set aside as dead letters since start (refused, or 5xx repeated).
    pub dropped: u64,
    /// Dead letters kept on disk now (`volspike outbox list`).
    pub dead_letters: usize,
    /// Most dead letters kept; beyond it the oldest are deleted.
    pub dead_letters_max: usize,
    /// Dead letters deleted since start because the folder was at its cap.
    pub dead_letters_deleted: u64,
    /// Older "latest state" posts replaced by a newer one before sending.
    pub coalesced: u64,
    /// Sample posts discarded to make room.
    pub shed: u64,
    /// Posts refused because the queue was full of alerts.
    pub refused: u64,
    /// Set while the backend answers 401/403: every post is kept and
    /// delivery to this backend waits ("backend rejects the API key ...").
    pub paused: Option<String>,
    /// Set while the state directory refuses writes; cleared by itself
    /// once a write succeeds again.
    pub disk_error: Option<String>,
    /// The last failure, for the operator.
    pub last_error: Option<String>,
}

/// How delivery to one backend stands, worst first, for health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryCondition {
    /// Nothing reaches this backend until the operator acts (the key is refused).
    Blocked(String),
    /// Posts are delivered but the state directory refuses writes: new posts
    /// cannot be queued and delivered ones are not yet recorded on disk.
    Degraded(String),
    /// Posts flow; some were refused for good and are kept for the operator
    /// (`volspike outbox list`). Routine (a user deleted an alert between
    /// two checks), so not a reason to call the appliance unhealthy.
    DeadLetters(String),
    /// Posts flow.
    Ok,
}

impl QueueStats {
    /// Blocked when paused by 401/403; degraded with a disk error; dead
    /// letters when some are kept; else ok. The backlog age is judged by
    /// the caller.
    pub fn condition(&self) -> DeliveryCondition {
        if let Some(reason) = &self.paused {
            return DeliveryCondition::Blocked(format!("delivery paused: {reason}"));
        }
        if let Some(error) = &self.disk_error {
            return DeliveryCondition::Degraded(format!("outbox cannot write: {error}"));
        }
        if self.dead_letters_deleted > 0 {
            return DeliveryCondition::DeadLetters(format!(
                "{} dead letters kept (volspike outbox list); {} older ones deleted at the cap of {}",
                self.dead_letters, self.dead_letters_deleted, self.dead_letters_max
            ));
        }
        if self.dead_letters > 0 {
            return DeliveryCondition::DeadLetters(format!(
                "{} dead letters kept (volspike outbox list)",
                self.dead_letters
            ));
        }
        DeliveryCondition::Ok
    }
}
