//! One backend's durable queue: the pending posts on disk, the ledger of
//! delivered dedup keys, the "in flight" marks, dead letters, shedding when
//! full, and the counters for `/health`.
//!
//! Layout under the state directory (one directory per backend):
//! ```text
//! outbox/<backend>/<seq, 16 digits>.json       one pending post each
//! outbox/<backend>/<seq, 16 digits>.inflight   empty: sent, answer not recorded
//! outbox/<backend>/delivered.json              dedup key → suppressed-until (unix ms)
//! outbox/<backend>/dead/, retry/               see [`super::dead_letters`]
//! ```
//! Every write goes through [`crate::state::write_atomic`] (temp file, fsync,
//! rename, directory fsync), so a `kill -9` at any point leaves either the
//! old or the new file, never half of one.
//!
//! A disk that refuses writes (full, read-only) never makes a delivered
//! post look pending: the delivery is recorded in memory first, the file
//! changes that failed are kept in a to-do list and retried by
//! [`Queue::flush`], and `/health` shows the error until they succeed.
//!
//! No file here does network I/O: the delivery loop asks for the next post
//! and reports the outcome back. This file holds the queue's state and its
//! posting side (push, shed, coalesce, next, in-flight marks); opening is
//! `load.rs`, recording deliveries `ledger.rs`, dead letters `dead.rs`, the
//! `/health` counters `stats.rs`.

mod dead;
mod ledger;
mod load;
mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::stats::{DeliveryCondition, QueueStats};
use super::client::Auth;
use super::kind::Kind;
use super::post::Post;

/// Dead letters kept per backend unless configured otherwise.
const DEFAULT_DEAD_LETTERS_MAX: usize = crate::config::settings::DEAD_LETTERS_MAX.default;

/// Name of the delivered-keys ledger inside a backend's directory.
const LEDGER_FILE: &str = "delivered.json";
/// Extension of the "in flight" marks.
const IN_FLIGHT_EXT: &str = "inflight";
/// Sequence numbers at or above this are renumbered from 1 at start, so the
/// next number can never wrap (16 digits is the file-name width).
const RENUMBER_AT: u64 = 10_000_000_000_000_000;

/// A pending post as stored on disk (never holds the key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredPost {
    /// Position in the queue; also the file name.
    pub seq: u64,
    /// When it was enqueued, unix ms (survives restarts, for the backlog age).
    pub enqueued_ms: u64,
    /// What it is.
    pub kind: Kind,
    /// Route.
    pub path: String,
    /// Where the key goes at send time.
    pub auth: Auth,
    /// Dedup key, if any.
    pub key: Option<String>,
    /// Until when (unix ms) this key suppresses repeats.
    pub dedup_until_ms: u64,
    /// "Latest state" identity: a newer post with it replaces this one.
    #[serde(default)]
    pub coalesce: Option<String>,
    /// Log label.
    pub label: String,
    /// JSON body as sent (minus the key).
    pub body: Value,
}

/// What [`Queue::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Written to disk under this sequence number.
    Queued(u64),
    /// The key is pending or was delivered within its window: nothing written.
    Duplicate,
    /// Full of posts that may not be shed: nothing written.
    Refused,
}

/// File changes a failing disk refused, retried by [`Queue::flush`].
#[derive(Debug, Default)]
struct Unwritten {
    /// The ledger in memory is newer than the file.
    ledger: bool,
    /// Delivered posts whose files (and marks) still exist → whether the
    /// post has a dedup key (its file may go only once the ledger is written).
    removals: BTreeMap<u64, bool>,
}

/// In-memory mirror of the directory, behind the queue's lock.
#[derive(Debug, Default)]
struct State {
    /// Pending posts by sequence number: delivery order.
    pending: BTreeMap<u64, Arc<StoredPost>>,
    /// Dedup key → sequence number of the pending post holding it.
    pending_keys: HashMap<String, u64>,
    /// Pending posts with an "in flight" mark on disk.
    in_flight: BTreeSet<u64>,
    /// Delivered key → suppressed until (unix ms); persisted.
    delivered: BTreeMap<String, u64>,
    /// What the disk refused, to write again.
    unwritten: Unwritten,
    /// The next sequence number.
    next_seq: u64,
    /// Counters (pending/oldest are computed on read).
    stats: QueueStats,
}

/// One backend's queue. Methods do blocking file I/O: call them from a
/// blocking context (tests, `spawn_blocking`) or accept a short fsync.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Backend name.
    name: &'static str,
    /// `outbox/<backend>` inside the state directory.
    dir: PathBuf,
    /// Most posts kept.
    capacity: usize,
    /// Most dead letters kept.
    dead_letters_max: usize,
    /// Test hook: while set, every write of file content fails as a full
    /// disk would (empty marks and removals still work, as on a full tmpfs).
    disk_full: AtomicBool,
    /// Everything mutable.
    state: Mutex<State>,
}

impl Queue {
    /// Backend name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            // A panic elsewhere while holding the lock left consistent data:
            // every change is one insert/remove after the file operation.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn file(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016}.json"))
    }

    fn mark(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016}.{IN_FLIGHT_EXT}"))
    }

    /// Makes every later write of file content fail like a full disk (or
    /// work again): the test hook behind [`super::Outbox::inject_disk_full`].
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }

    /// Writes `post` to disk (fsync'd) and queues it, unless it is a
    /// duplicate or the queue is full of posts that may not be shed. A
    /// "latest state" post replaces a pending older one with the same identity.
    pub fn push(&self, post: &Post, now_ms: u64) -> io::Result<Pushed> {
        let mut state = self.lock();
        if let Some(dedup) = &post.dedup {
            let pending_dup = state
                .pending_keys
                .get(&dedup.key)
                .and_then(|seq| state.pending.get(seq))
                .is_some_and(|p| p.dedup_until_ms > now_ms);
            let delivered_dup = state
                .delivered
                .get(&dedup.key)
                .is_some_and(|&until| until > now_ms);
            if pending_dup || delivered_dup {
                return Ok(Pushed::Duplicate);
            }
        }
        let stored = StoredPost {
            seq: 0,
            enqueued_ms: now_ms,
            kind: post.kind,
            path: post.path.to_string(),
            auth: post.auth,
            key: post.dedup.as_ref().map(|d| d.key.clone()),
            dedup_until_ms: post.dedup.as_ref().map_or(0, |d| {
                now_ms.saturating_add(d.window.as_millis().min(u64::MAX as u128) as u64)
            }),
            coalesce: post.coalesce.clone(),
            label: post.label.clone(),
            body: post.body.clone(),
        };
        self.insert(&mut state, stored, now_ms)
    }

    /// Coalesces, makes room, numbers, writes and queues `stored`.
    fn insert(&self, state: &mut State, mut stored: StoredPost, now_ms: u64) -> io::Result<Pushed> {
        let replaced: Vec<Arc<StoredPost>> = match &stored.coalesce {
            Some(identity) => state
                .pending
                .values()
                .filter(|p| {
                    p.coalesce.as_ref() == Some(identity) && !state.in_flight.contains(&p.seq)
                })
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if state.pending.len() - replaced.len() >= self.capacity {
            let victim = state
                .pending
                .values()
                .find(|p| p.kind.is_sheddable())
                .cloned();
            match victim {
                Some(victim) => {
                    remove_file(&self.file(victim.seq))?;
                    state.pending.remove(&victim.seq);
                    state.stats.shed += 1;
                    tracing::warn!(
                        backend = self.name,
                        capacity = self.capacity,
                        shed_seq = victim.seq,
                        "outbox full: shed {} (enqueued {}s ago) to make room for {}",
                        victim.label,
                        now_ms.saturating_sub(victim.enqueued_ms) / 1000,
                        stored.label
                    );
                }
                None => {
                    state.stats.refused += 1;
                    tracing::error!(
                        backend = self.name,
                        capacity = self.capacity,
                        "outbox full of undelivered alerts: refused the newest, {}",
                        stored.label
                    );
                    return Ok(Pushed::Refused);
                }
            }
        }
        let seq = self.free_seq(state)?;
        stored.seq = seq;
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        // Durable before anyone is told it is queued.
        self.write(state, &self.file(seq), &bytes)?;
        state.next_seq = seq + 1;
        for old in replaced {
            // The newer post is durable: the older one is no longer worth sending.
            remove_file(&self.file(old.seq))?;
            state.pending.remove(&old.seq);
            state.stats.coalesced += 1;
        }
        if let Some(key) = &stored.key {
            state.pending_keys.insert(key.clone(), seq);
        }
        state.pending.insert(seq, Arc::new(stored));
        Ok(Pushed::Queued(seq))
    }

    /// The next sequence number whose file does not exist: never one that
    /// would overwrite a pending post, never a wrap to 0.
    fn free_seq(&self, state: &State) -> io::Result<u64> {
        let mut seq = state.next_seq.max(1);
        loop {
            if !state.pending.contains_key(&seq) && !self.file(seq).exists() {
                return Ok(seq);
            }
            seq = seq.checked_add(1).ok_or_else(|| {
                io::Error::other("outbox sequence numbers exhausted; restart to renumber")
            })?;
        }
    }

    /// The oldest pending post `ready` accepts, and whether it carries an
    /// "in flight" mark (sent before without a recorded answer).
    pub fn next(&self, ready: impl Fn(&StoredPost) -> bool) -> Option<(Arc<StoredPost>, bool)> {
        let state = self.lock();
        state
            .pending
            .values()
            .find(|p| ready(p))
            .map(|p| (p.clone(), state.in_flight.contains(&p.seq)))
    }

    /// Marks `post` as being sent, before the request: after a crash the
    /// mark says its fate is unknown (see [`Queue::open`]). An empty file,
    /// so it is written even on a disk with no free blocks.
    pub fn mark_in_flight(&self, post: &StoredPost) -> io::Result<()> {
        let mut state = self.lock();
        if state.in_flight.contains(&post.seq) {
            return Ok(());
        }
        let result = fs::File::create(self.mark(post.seq))
            .and_then(|_| fs::File::open(&self.dir)?.sync_all());
        if let Err(e) = &result {
            state.stats.disk_error = Some(format!("{}: {e}", self.mark(post.seq).display()));
        }
        result?;
        self.disk_works(&mut state);
        state.in_flight.insert(post.seq);
        Ok(())
    }

    /// The backend answered without taking `post` (5xx, 429, 401/403): it
    /// was not stored there, so a restart need not check before resending.
    pub fn clear_in_flight(&self, post: &StoredPost) {
        let mut state = self.lock();
        if state.in_flight.remove(&post.seq) {
            let _ = fs::remove_file(self.mark(post.seq));
        }
    }

    /// Records why delivery to this backend is paused (`None`: it is not).
    pub fn set_paused(&self, reason: Option<String>) {
        self.lock().stats.paused = reason;
    }

    /// Whether delivery is paused (401/403).
    pub fn is_paused(&self) -> bool {
        self.lock().stats.paused.is_some()
    }

    /// Whether `seq` is still pending.
    pub fn is_pending(&self, seq: u64) -> bool {
        self.lock().pending.contains_key(&seq)
    }

    /// An attempt failed and will be repeated.
    pub fn retried(&self, error: String) {
        let mut state = self.lock();
        state.stats.retried += 1;
        state.stats.last_error = Some(error);
    }

    /// Removes `post`'s file, mark and in-memory entry (it may already be
    /// gone: shed or coalesced while in flight).
    fn forget(&self, state: &mut State, post: &StoredPost) -> io::Result<()> {
        remove_file(&self.file(post.seq))?;
        remove_file(&self.mark(post.seq))?;
        state.pending.remove(&post.seq);
        state.in_flight.remove(&post.seq);
        if let Some(key) = &post.key {
            if state.pending_keys.get(key) == Some(&post.seq) {
                state.pending_keys.remove(key);
            }
        }
        Ok(())
    }

    /// Counters and backlog.
    pub fn stats(&self, now_ms: u64) -> QueueStats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.pending = state.pending.len();
        stats.oldest_pending_enqueued_ms = state.pending.values().map(|p| p.enqueued_ms).min();
        stats.oldest_pending_seconds = stats
            .oldest_pending_enqueued_ms
            .map(|oldest| now_ms.saturating_sub(oldest) / 1000);
        stats
    }
}

/// Removes a file; a missing one is fine.
fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
