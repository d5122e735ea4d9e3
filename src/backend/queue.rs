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
//! This file does no network I/O: the delivery loop asks it for the next
//! post and reports the outcome back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::Auth;
use super::dead_letters::{self, DeadLetter};
use super::post::{Kind, Post};
use crate::state::write_atomic;

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
    /// Opens (creating) the directory and loads what a previous run left:
    /// pending posts in sequence order, their "in flight" marks, and the
    /// ledger. A post whose key the ledger already holds was delivered just
    /// before a crash: it is removed. Dead letters asked to be replayed are
    /// queued again.
    pub fn open(
        root: &Path,
        name: &'static str,
        capacity: usize,
        now_ms: u64,
    ) -> io::Result<Queue> {
        let dir = root.join("outbox").join(name);
        fs::create_dir_all(&dir)?;
        // Created by the service, so it can remove what an operator's
        // `volspike outbox retry` (perhaps as root) moves in there.
        fs::create_dir_all(dead_letters::dead_dir(&dir))?;
        fs::create_dir_all(dead_letters::retry_dir(&dir))?;
        // A freshly created directory entry must survive a power cut too.
        if let Some(parent) = dir.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        let queue = Queue {
            name,
            dir,
            capacity: capacity.max(1),
            dead_letters_max: DEFAULT_DEAD_LETTERS_MAX,
            disk_full: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        };
        let mut state = queue.lock();
        state.delivered = queue.load_ledger(now_ms);
        let mut marks = BTreeSet::new();
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&queue.dir)? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') && file_name.contains(".tmp.") {
                // A write interrupted by a crash; its post was never
                // acknowledged to the job, which re-decides it.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(seq) = parse_seq(&file_name, IN_FLIGHT_EXT) {
                marks.insert(seq);
            } else if let Some(seq) = parse_seq(&file_name, "json") {
                files.insert(seq, entry.path());
            }
        }
        if files
            .keys()
            .next_back()
            .is_some_and(|&max| max >= RENUMBER_AT)
        {
            files = queue.renumber(files, &mut marks)?;
        }
        for (&seq, path) in &files {
            match fs::read(path)
                .and_then(|b| serde_json::from_slice::<StoredPost>(&b).map_err(io::Error::other))
            {
                Ok(post) if post.seq == seq => {
                    if let Some(key) = &post.key {
                        if state
                            .delivered
                            .get(key)
                            .is_some_and(|&until| until > now_ms)
                        {
                            tracing::info!(backend = name, post = %post.label, "already delivered before the restart; removing it");
                            let _ = fs::remove_file(path);
                            continue;
                        }
                        state.pending_keys.insert(key.clone(), seq);
                    }
                    if marks.contains(&seq) {
                        state.in_flight.insert(seq);
                    }
                    state.pending.insert(seq, Arc::new(post));
                }
                Ok(post) => {
                    tracing::error!(backend = name, file = %path.display(), stored_seq = post.seq, "outbox file name and content disagree; ignoring it")
                }
                Err(e) => {
                    // Keep the bytes for the operator, out of the queue's way.
                    let aside = path.with_extension("corrupt");
                    tracing::error!(backend = name, file = %path.display(), error = %e, "unreadable outbox file; moved aside to {}", aside.display());
                    let _ = fs::rename(path, aside);
                }
            }
        }
        // Marks whose post is gone (delivered, removal done, mark left).
        for seq in marks.difference(&state.in_flight) {
            let _ = fs::remove_file(queue.mark(*seq));
        }
        state.next_seq = files.keys().next_back().map_or(1, |max| max + 1);
        state.stats.dead_letters = dead_letters::count(&queue.dir);
        state.stats.dead_letters_max = queue.dead_letters_max;
        if !state.pending.is_empty() {
            tracing::info!(
                backend = name,
                pending = state.pending.len(),
                in_flight = state.in_flight.len(),
                "outbox: resending what a previous run left undelivered"
            );
        }
        drop(state);
        queue.adopt_retries(now_ms);
        Ok(queue)
    }

    /// Rewrites the posts as 1, 2, 3… in their order (with their marks).
    /// Ascending order makes it safe: the k-th post's new number k is at
    /// most its old one, so it never lands on a post not yet moved.
    fn renumber(
        &self,
        files: BTreeMap<u64, PathBuf>,
        marks: &mut BTreeSet<u64>,
    ) -> io::Result<BTreeMap<u64, PathBuf>> {
        tracing::warn!(
            backend = self.name,
            posts = files.len(),
            "outbox sequence numbers near their limit; renumbering the pending posts from 1"
        );
        let mut renumbered = BTreeMap::new();
        let mut new_marks = BTreeSet::new();
        for (new_seq, (old_seq, path)) in (1u64..).zip(files) {
            if new_seq != old_seq {
                let bytes = fs::read(&path)?;
                let mut value: Value = match serde_json::from_slice(&bytes) {
                    Ok(value) => value,
                    // Left as is: the load below moves it aside.
                    Err(_) => {
                        renumbered.insert(old_seq, path);
                        continue;
                    }
                };
                value["seq"] = Value::from(new_seq);
                let bytes = serde_json::to_vec(&value).map_err(io::Error::other)?;
                write_atomic(&self.file(new_seq), &bytes)?;
                fs::remove_file(&path)?;
                if marks.remove(&old_seq) {
                    fs::File::create(self.mark(new_seq))?;
                    let _ = fs::remove_file(self.mark(old_seq));
                    new_marks.insert(new_seq);
                }
            } else if marks.remove(&old_seq) {
                new_marks.insert(new_seq);
            }
            renumbered.insert(new_seq, self.file(new_seq));
        }
        marks.extend(new_marks);
        Ok(renumbered)
    }

    /// Keeps at most `max` dead letters (at least one), deleting the oldest
    /// beyond it now and whenever another is set aside.
    pub fn with_dead_letters_max(mut self, max: usize) -> Queue {
        self.dead_letters_max = max.max(1);
        {
            let mut state = self.lock();
            state.stats.dead_letters_max = self.dead_letters_max;
            self.enforce_dead_letters_max(&mut state);
        }
        self
    }

    /// Deletes the oldest dead letters beyond the cap, with an error log:
    /// refused posts must not fill the disk the pending ones need.
    fn enforce_dead_letters_max(&self, state: &mut State) {
        if state.stats.dead_letters <= self.dead_letters_max {
            return;
        }
        match dead_letters::delete_oldest(&self.dir, self.dead_letters_max) {
            Ok(deleted) => {
                if let (Some(first), Some(last)) = (deleted.first(), deleted.last()) {
                    tracing::error!(
                        backend = self.name,
                        deleted = deleted.len(),
                        cap = self.dead_letters_max,
                        "dead letters at their cap (VOLSPIKE_DEAD_LETTERS_MAX): deleted the oldest, {first} to {last}"
                    );
                }
                state.stats.dead_letters_deleted += deleted.len() as u64;
            }
            Err(e) => tracing::error!(
                backend = self.name,
                error = %e,
                "dead letters at their cap (VOLSPIKE_DEAD_LETTERS_MAX) but the oldest cannot be deleted"
            ),
        }
        state.stats.dead_letters = dead_letters::count(&self.dir);
    }

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

    /// [`write_atomic`], failing while the disk-full hook is set; records
    /// the outcome as the queue's disk condition.
    fn write(&self, state: &mut State, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let result = if self.disk_full.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ))
        } else {
            write_atomic(path, bytes)
        };
        match &result {
            Ok(()) => self.disk_works(state),
            Err(e) => {
                let text = format!("{}: {e}", path.display());
                if state.stats.disk_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(backend = self.name, error = %text, "the state directory refuses writes; delivery keeps going from memory and retries the files");
                }
                state.stats.disk_error = Some(text);
            }
        }
        result
    }

    /// A write succeeded: the disk error clears, unless refused changes
    /// are still waiting for [`Queue::flush`].
    fn disk_works(&self, state: &mut State) {
        if state.unwritten.removals.is_empty()
            && !state.unwritten.ledger
            && state.stats.disk_error.take().is_some()
        {
            tracing::info!(
                backend = self.name,
                "the state directory takes writes again"
            );
        }
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

    /// The backend has `post`: it stops being pending at once; then its key
    /// goes into the ledger file and its file is removed. A disk error is
    /// returned but changes nothing in memory: the files are written by a
    /// later [`Queue::flush`], and the post is never sent again meanwhile.
    /// (A crash between the two leaves a file whose key the ledger holds;
    /// [`Queue::open`] removes it instead of resending.)
    pub fn delivered(&self, post: &StoredPost, now_ms: u64) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(key) = &post.key {
            state.delivered.insert(key.clone(), post.dedup_until_ms);
            state.unwritten.ledger = true;
        }
        state.pending.remove(&post.seq);
        state.in_flight.remove(&post.seq);
        if let Some(key) = &post.key {
            if state.pending_keys.get(key) == Some(&post.seq) {
                state.pending_keys.remove(key);
            }
        }
        state
            .unwritten
            .removals
            .insert(post.seq, post.key.is_some());
        state.stats.delivered += 1;
        *state
            .stats
            .delivered_by_kind
            .entry(post.kind.as_str())
            .or_default() += 1;
        self.write_unwritten(&mut state, now_ms)
    }

    /// Writes what the disk refused before. `Ok` when nothing is left.
    pub fn flush(&self, now_ms: u64) -> io::Result<()> {
        let mut state = self.lock();
        self.write_unwritten(&mut state, now_ms)
    }

    /// Whether file changes are waiting for the disk.
    pub fn has_unwritten(&self) -> bool {
        let state = self.lock();
        state.unwritten.ledger || !state.unwritten.removals.is_empty()
    }

    fn write_unwritten(&self, state: &mut State, now_ms: u64) -> io::Result<()> {
        let mut ledger_result = Ok(());
        if state.unwritten.ledger {
            state.delivered.retain(|_, until| *until > now_ms);
            let bytes = serde_json::to_vec(&state.delivered).map_err(io::Error::other)?;
            ledger_result = self.write(state, &self.dir.join(LEDGER_FILE), &bytes);
            if ledger_result.is_ok() {
                state.unwritten.ledger = false;
            }
        }
        let ledger_durable = !state.unwritten.ledger;
        // A keyed post's file goes only once its key is durable; the others
        // go at once, which also frees space on a full disk.
        let removable: Vec<u64> = state
            .unwritten
            .removals
            .iter()
            .filter(|(_, keyed)| ledger_durable || !**keyed)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in removable {
            // No directory fsync: a removal lost to a power cut resends a post
            // whose key the ledger holds (skipped) or an idempotent one.
            remove_file(&self.file(seq))?;
            remove_file(&self.mark(seq))?;
            state.unwritten.removals.remove(&seq);
        }
        ledger_result?;
        if state.stats.disk_error.take().is_some() {
            tracing::info!(backend = self.name, "the outbox files are written again");
        }
        Ok(())
    }

    /// Sets `post` aside as a dead letter (kept in `dead/`), then removes
    /// it from the queue. On a disk error the post stays pending.
    pub fn dead_letter(&self, post: &StoredPost, reason: String, now_ms: u64) -> io::Result<()> {
        let mut state = self.lock();
        let letter = DeadLetter {
            post: post.clone(),
            reason: reason.clone(),
            dead_at_ms: now_ms,
        };
        if self.disk_full.load(Ordering::SeqCst) {
            let e = io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            );
            state.stats.disk_error = Some(format!("{}: {e}", self.dir.display()));
            return Err(e);
        }
        if let Err(e) = dead_letters::store(&self.dir, &letter) {
            state.stats.disk_error = Some(format!("{}: {e}", self.dir.display()));
            return Err(e);
        }
        self.disk_works(&mut state);
        self.forget(&mut state, post)?;
        state.stats.dropped += 1;
        state.stats.dead_letters += 1;
        state.stats.last_error = Some(reason);
        self.enforce_dead_letters_max(&mut state);
        Ok(())
    }

    /// Queues again the dead letters an operator asked to replay
    /// (`volspike outbox retry`), and recounts the dead letters kept (the
    /// operator may have dropped some). Called at start and periodically.
    pub fn adopt_retries(&self, now_ms: u64) {
        for (path, letter) in dead_letters::retries(&self.dir) {
            let mut state = self.lock();
            let mut post = letter.post;
            // A replay is a new attempt: its dedup window restarts.
            if let Some(key) = &post.key {
                state.delivered.remove(key);
                post.dedup_until_ms = post
                    .dedup_until_ms
                    .saturating_sub(post.enqueued_ms)
                    .saturating_add(now_ms);
            }
            post.enqueued_ms = now_ms;
            let label = post.label.clone();
            match self.insert(&mut state, post, now_ms) {
                Ok(Pushed::Queued(seq)) => {
                    let _ = fs::remove_file(&path);
                    tracing::info!(
                        backend = self.name,
                        seq,
                        "dead letter queued again: {label}"
                    );
                }
                Ok(_) => tracing::warn!(
                    backend = self.name,
                    "cannot queue the dead letter {label} again: the outbox is full"
                ),
                Err(e) => {
                    tracing::error!(backend = self.name, error = %e, "cannot queue the dead letter {label} again")
                }
            }
        }
        let kept = dead_letters::count(&self.dir);
        let mut state = self.lock();
        state.stats.dead_letters = kept;
        // An operator may have copied letters back in by hand.
        self.enforce_dead_letters_max(&mut state);
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

    /// The persisted ledger without expired keys; empty (with an error log)
    /// when unreadable: resending beats losing, and the job's own state
    /// still guards against most repeats.
    fn load_ledger(&self, now_ms: u64) -> BTreeMap<String, u64> {
        let path = self.dir.join(LEDGER_FILE);
        let mut ledger: BTreeMap<String, u64> = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(ledger) => ledger,
                Err(e) => {
                    tracing::error!(backend = self.name, file = %path.display(), error = %e, "delivered-keys ledger unreadable; starting without it");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::error!(backend = self.name, file = %path.display(), error = %e, "cannot read the delivered-keys ledger; starting without it");
                BTreeMap::new()
            }
        };
        ledger.retain(|_, until| *until > now_ms);
        ledger
    }
}

/// `0000000000000042.json` → 42 (with `ext` = `json`).
fn parse_seq(file_name: &str, ext: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(ext)?.strip_suffix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes a file; a missing one is fine.
fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A dedup window in ms (for tests and callers that compute expiry).
#[cfg(test)]
fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::payloads::{
        LiquidUniverseUpdate, OiSample, OiSamples, UniverseSymbol, VolumeAlertType,
    };
    use crate::backend::post::tests_support::volume_post;

    fn temp_root(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "volspike-queue-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn samples(n: usize) -> Post {
        let chunk = OiSamples::chunks(
            vec![
                OiSample {
                    symbol: format!("S{n}USDT"),
                    open_interest: 1.0,
                    open_interest_usd: None,
                    mark_price: None,
                };
                1
            ],
            &format!("sample-{n}"),
            "realtime",
        );
        Post::oi_samples(&chunk[0])
    }

    fn universe() -> Post {
        Post::universe(&LiquidUniverseUpdate {
            symbols: vec![UniverseSymbol {
                symbol: "BTCUSDT".into(),
                quote_volume_24h: 1e9,
                entered_at: "t".into(),
                last_seen_at: "t".into(),
            }],
            updated_at: "t".into(),
        })
        .expect("non-empty")
    }

    fn labels(q: &Queue) -> Vec<String> {
        q.lock().pending.values().map(|p| p.label.clone()).collect()
    }

    const T0: u64 = 1_764_770_700_000;

    #[test]
    fn a_full_queue_sheds_the_oldest_samples_first_then_refuses_alerts() {
        let root = temp_root("shed");
        let q = Queue::open(&root, "primary", 4, T0).expect("open");
        let a1 = volume_post("AUSDT", VolumeAlertType::Spike);
        q.push(&samples(1), T0).expect("push");
        q.push(&a1, T0).expect("push");
        q.push(&samples(2), T0).expect("push");
        q.push(&universe(), T0).expect("push");
        // Full: the next alert pushes out the OLDEST sample.
        let a2 = volume_post("BUSDT", VolumeAlertType::Spike);
        assert!(matches!(q.push(&a2, T0), Ok(Pushed::Queued(_))));
        let now = labels(&q);
        assert!(!now.iter().any(|l| l.contains("sample-1")), "{now:?}");
        assert!(now.iter().any(|l| l.contains("sample-2")));
        // Then the other sample.
        let a3 = volume_post("CUSDT", VolumeAlertType::Spike);
        assert!(matches!(q.push(&a3, T0), Ok(Pushed::Queued(_))));
        assert!(!labels(&q).iter().any(|l| l.contains("sample")));
        // Only non-sheddable posts remain: the newest is refused, and a
        // sample cannot push out an alert either.
        let a4 = volume_post("DUSDT", VolumeAlertType::Spike);
        assert_eq!(q.push(&a4, T0).expect("push"), Pushed::Refused);
        assert_eq!(q.push(&samples(3), T0).expect("push"), Pushed::Refused);
        let stats = q.stats(T0);
        assert_eq!((stats.pending, stats.shed, stats.refused), (4, 2, 2));
        // Files on disk match memory: the shed posts are gone.
        let files = fs::read_dir(root.join("outbox/primary"))
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| parse_seq(&e.file_name().to_string_lossy(), "json").is_some())
            })
            .count();
        assert_eq!(files, 4);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn dedup_covers_pending_and_delivered_keys_until_their_window_ends() {
        let root = temp_root("dedup");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        let alert = volume_post("BTCUSDT", VolumeAlertType::Spike);
        let Pushed::Queued(seq) = q.push(&alert, T0).expect("push") else {
            panic!("first push queues");
        };
        assert_eq!(q.push(&alert, T0 + 1).expect("push"), Pushed::Duplicate);
        // Another alert type for the same hour is a different alert.
        let update = volume_post("BTCUSDT", VolumeAlertType::FullUpdate);
        assert!(matches!(q.push(&update, T0), Ok(Pushed::Queued(_))));

        let stored = q.lock().pending.get(&seq).cloned().expect("pending");
        q.delivered(&stored, T0 + 5).expect("delivered");
        assert_eq!(q.push(&alert, T0 + 10).expect("push"), Pushed::Duplicate);

        // The ledger is persisted: a restart still knows the key.
        drop(q);
        let q = Queue::open(&root, "primary", 100, T0 + 20).expect("reopen");
        assert_eq!(q.push(&alert, T0 + 20).expect("push"), Pushed::Duplicate);
        // After the window (48 h) the key is forgotten.
        let later = T0 + ms(crate::backend::post::DEFAULT_DEDUP_WINDOW) + 1;
        assert!(matches!(q.push(&alert, later), Ok(Pushed::Queued(_))));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn reopening_resends_in_order_and_skips_what_the_ledger_says_was_delivered() {
        let root = temp_root("reopen");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        let first = volume_post("AUSDT", VolumeAlertType::Spike);
        let second = volume_post("BUSDT", VolumeAlertType::Spike);
        q.push(&first, T0).expect("push");
        q.push(&samples(1), T0).expect("push");
        q.push(&second, T0).expect("push");
        // "Crash" right after the ledger write of `first`, before its file
        // was removed: put the ledger in place by hand and keep the file.
        let key = first.dedup_key().expect("keyed").to_string();
        let ledger: BTreeMap<String, u64> = [(key, T0 + 1_000_000)].into();
        write_atomic(
            &root.join("outbox/primary/delivered.json"),
            &serde_json::to_vec(&ledger).expect("json"),
        )
        .expect("ledger");
        // And a temp file from an interrupted write.
        fs::write(
            root.join("outbox/primary/.0000000000000009.json.tmp.1"),
            b"{",
        )
        .expect("tmp");
        drop(q);

        let q = Queue::open(&root, "primary", 100, T0 + 10).expect("reopen");
        let order = labels(&q);
        assert_eq!(order.len(), 2, "{order:?}");
        assert!(order[0].contains("sample-1"));
        assert!(order[1].contains("BUSDT"));
        // New posts continue after the highest sequence seen.
        let Pushed::Queued(seq) = q.push(&samples(2), T0 + 10).expect("push") else {
            panic!("queued");
        };
        assert_eq!(seq, 4);
        assert!(!root
            .join("outbox/primary/.0000000000000009.json.tmp.1")
            .exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn next_skips_posts_that_are_not_ready_and_keeps_order_otherwise() {
        let root = temp_root("lanes");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&samples(1), T0).expect("push");
        q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
            .expect("push");
        q.push(&samples(2), T0).expect("push");
        let (head, _) = q.next(|_| true).expect("head");
        assert!(head.label.contains("sample-1"));
        let (other, in_flight) = q
            .next(|p| p.path != "/api/market/open-interest/ingest")
            .expect("other route");
        assert!(other.label.contains("AUSDT"));
        assert!(!in_flight);
        let _ = fs::remove_dir_all(&root);
    }

    fn checked(id: &str, value: f64) -> Post {
        Post::user_alert_checked(
            "primary",
            &crate::backend::payloads::UserAlertChecked {
                alert_id: id.into(),
                last_checked_value: value,
            },
        )
    }

    fn files(root: &Path, ext: &str) -> usize {
        fs::read_dir(root.join("outbox/primary"))
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| parse_seq(&e.file_name().to_string_lossy(), ext).is_some())
            })
            .count()
    }

    #[test]
    fn a_sequence_number_at_the_limit_is_renumbered_and_never_wraps_onto_a_pending_post() {
        let root = temp_root("wrap");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
            .expect("push");
        drop(q);
        // A stray post at the very last number (as in the field report).
        let mut last: Value = serde_json::from_slice(
            &fs::read(root.join("outbox/primary/0000000000000001.json")).expect("read"),
        )
        .expect("json");
        last["seq"] = Value::from(u64::MAX);
        last["label"] = Value::from("stray");
        last["key"] = Value::Null;
        fs::write(
            root.join(format!("outbox/primary/{}.json", u64::MAX)),
            serde_json::to_vec(&last).expect("json"),
        )
        .expect("write");
        let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
        assert_eq!(labels(&q).len(), 2);
        let Pushed::Queued(seq) = q
            .push(&volume_post("BUSDT", VolumeAlertType::Spike), T0)
            .expect("push")
        else {
            panic!("queued");
        };
        assert_eq!(seq, 3, "renumbered 1, 2; the next is 3");
        let order = labels(&q);
        assert_eq!(order.len(), 3, "{order:?}");
        assert!(order[0].contains("AUSDT") && order[1] == "stray" && order[2].contains("BUSDT"));
        assert_eq!(files(&root, "json"), 3);
        // And were a number ever taken, the next free one is used.
        q.lock().next_seq = 2;
        let Pushed::Queued(seq) = q
            .push(&volume_post("CUSDT", VolumeAlertType::Spike), T0)
            .expect("push")
        else {
            panic!("queued");
        };
        assert_eq!(seq, 4);
        assert_eq!(labels(&q).len(), 4);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn latest_state_posts_are_coalesced_per_identity() {
        let root = temp_root("coalesce");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&universe(), T0).expect("push");
        q.push(&checked("a", 1.0), T0).expect("push");
        q.push(&checked("b", 1.0), T0).expect("push");
        q.push(&universe(), T0).expect("push");
        q.push(&checked("a", 2.0), T0).expect("push");
        q.push(&checked("a", 3.0), T0).expect("push");
        let order = labels(&q);
        assert_eq!(order.len(), 3, "{order:?}");
        assert!(order[0].contains("user alert b"));
        assert!(order[1].contains("liquid universe"));
        assert!(order[2].contains("user alert a checked (3)"));
        assert_eq!(q.stats(T0).coalesced, 3);
        assert_eq!(files(&root, "json"), 3);
        // One in flight is not replaced (its answer may still come): both stay.
        let (a, _) = q.next(|p| p.label.contains("user alert a")).expect("a");
        q.mark_in_flight(&a).expect("mark");
        q.push(&checked("a", 4.0), T0).expect("push");
        assert_eq!(labels(&q).len(), 4);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_full_disk_keeps_a_delivered_post_delivered_and_writes_later() {
        let root = temp_root("full");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        let alert = volume_post("AUSDT", VolumeAlertType::Spike);
        q.push(&alert, T0).expect("push");
        q.push(&samples(1), T0).expect("push");
        q.set_disk_full(true);
        // Nothing new can be stored.
        assert!(q
            .push(&volume_post("BUSDT", VolumeAlertType::Spike), T0)
            .is_err());
        let (post, _) = q.next(|p| p.kind == Kind::VolumeAlert).expect("alert");
        // The empty mark still works, as on a full tmpfs.
        q.mark_in_flight(&post).expect("mark");
        assert!(q.delivered(&post, T0).is_err());
        // Not pending any more: never sent again; the error is visible.
        assert!(q.next(|p| p.kind == Kind::VolumeAlert).is_none());
        let stats = q.stats(T0);
        assert_eq!((stats.pending, stats.delivered), (1, 1));
        assert!(stats.disk_error.is_some());
        assert!(q.has_unwritten());
        assert_eq!(q.push(&alert, T0).expect("dedup"), Pushed::Duplicate);
        assert!(q.flush(T0).is_err());
        // A delivered post without a key needs no ledger: its file goes at
        // once (freeing space) while the alert's waits for its key.
        let (sample, _) = q.next(|_| true).expect("sample");
        assert_eq!(sample.kind, Kind::OiSamples);
        assert!(q.delivered(&sample, T0).is_err(), "the ledger still fails");
        assert_eq!(files(&root, "json"), 1, "only the alert's file is left");
        assert!(q.next(|_| true).is_none());
        // Space returns.
        q.set_disk_full(false);
        q.flush(T0).expect("flush");
        assert!(!q.has_unwritten());
        assert!(q.stats(T0).disk_error.is_none());
        assert_eq!((files(&root, "json"), files(&root, IN_FLIGHT_EXT)), (0, 0));
        // A refused enqueue shows too, and clears at the next write that works.
        q.set_disk_full(true);
        let other = volume_post("CUSDT", VolumeAlertType::Spike);
        assert!(q.push(&other, T0).is_err());
        assert!(q.stats(T0).disk_error.is_some());
        q.set_disk_full(false);
        q.push(&other, T0).expect("push");
        assert!(q.stats(T0).disk_error.is_none());
        drop(q);
        let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
        assert_eq!(q.push(&alert, T0).expect("dedup"), Pushed::Duplicate);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn in_flight_marks_survive_a_restart_and_go_with_their_post() {
        let root = temp_root("inflight");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
            .expect("push");
        q.push(&volume_post("BUSDT", VolumeAlertType::Spike), T0)
            .expect("push");
        let (a, in_flight) = q.next(|_| true).expect("a");
        assert!(!in_flight);
        q.mark_in_flight(&a).expect("mark");
        drop(q);
        // A mark without its post is left over from a finished delivery.
        fs::File::create(root.join("outbox/primary/0000000000000042.inflight")).expect("mark");
        let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
        let (a, in_flight) = q.next(|_| true).expect("a");
        assert!(in_flight && a.label.contains("AUSDT"));
        let (b, in_flight) = q.next(|p| p.seq != a.seq).expect("b");
        assert!(!in_flight && b.label.contains("BUSDT"));
        assert_eq!(files(&root, IN_FLIGHT_EXT), 1);
        q.clear_in_flight(&a);
        assert_eq!(files(&root, IN_FLIGHT_EXT), 0);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn dead_letters_are_kept_counted_and_replayed() {
        let root = temp_root("dead");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        let alert = volume_post("AUSDT", VolumeAlertType::Spike);
        q.push(&alert, T0).expect("push");
        let (post, _) = q.next(|_| true).expect("pending");
        q.dead_letter(&post, "HTTP 400: bad".into(), T0)
            .expect("dead");
        let stats = q.stats(T0);
        assert_eq!(
            (stats.pending, stats.dead_letters, stats.dropped),
            (0, 1, 1)
        );
        assert!(matches!(
            stats.condition(),
            DeliveryCondition::DeadLetters(_)
        ));
        let dir = root.join("outbox/primary");
        let listed = dead_letters::list(&dir).expect("list");
        assert_eq!(listed.len(), 1);
        let letter = listed[0].1.as_ref().expect("readable");
        assert_eq!(letter.reason, "HTTP 400: bad");
        assert_eq!(letter.post.label, post.label);
        // Replayed: queued again under a new number, dedup window restarted.
        dead_letters::request_retry(&dir, "all").expect("retry");
        q.adopt_retries(T0 + 1000);
        let stats = q.stats(T0 + 1000);
        assert_eq!((stats.pending, stats.dead_letters), (1, 0));
        assert_eq!(q.push(&alert, T0 + 1000).expect("push"), Pushed::Duplicate);
        // Dropped for good.
        let (post, _) = q.next(|_| true).expect("pending");
        q.dead_letter(&post, "HTTP 404".into(), T0).expect("dead");
        assert_eq!(
            dead_letters::drop_letters(&dir, "all").expect("drop").len(),
            1
        );
        q.adopt_retries(T0);
        assert_eq!(q.stats(T0).dead_letters, 0);
        assert!(dead_letters::drop_letters(&dir, "0000000000000099").is_err());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_not_fatal() {
        let root = temp_root("corrupt");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&samples(1), T0).expect("push");
        drop(q);
        fs::write(root.join("outbox/primary/0000000000000007.json"), b"{nope").expect("write");
        let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
        assert_eq!(q.stats(T0).pending, 1);
        assert!(root
            .join("outbox/primary/0000000000000007.corrupt")
            .exists());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn dead_letters_beyond_the_cap_delete_the_oldest_and_are_counted() {
        let root = temp_root("deadcap");
        let q = Queue::open(&root, "primary", 100, T0)
            .expect("open")
            .with_dead_letters_max(3);
        for (i, symbol) in ["AUSDT", "BUSDT", "CUSDT", "DUSDT", "EUSDT"]
            .iter()
            .enumerate()
        {
            q.push(&volume_post(symbol, VolumeAlertType::Spike), T0)
                .expect("push");
            let (post, _) = q.next(|_| true).expect("pending");
            q.dead_letter(&post, format!("HTTP 400: {i}"), T0)
                .expect("dead");
        }
        let stats = q.stats(T0);
        assert_eq!(
            (
                stats.dead_letters,
                stats.dropped,
                stats.dead_letters_deleted
            ),
            (3, 5, 2)
        );
        assert_eq!(stats.dead_letters_max, 3);
        let kept: Vec<String> = dead_letters::list(&root.join("outbox/primary"))
            .expect("list")
            .into_iter()
            .filter_map(|(_, letter)| letter.ok().map(|l| l.post.label))
            .collect();
        assert_eq!(kept.len(), 3);
        assert!(
            kept[0].contains("CUSDT") && kept[2].contains("EUSDT"),
            "the newest stay: {kept:?}"
        );
        match stats.condition() {
            DeliveryCondition::DeadLetters(why) => {
                assert!(
                    why.contains("2 older ones deleted at the cap of 3"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A lower cap at the next start trims what the folder holds.
        drop(q);
        let q = Queue::open(&root, "primary", 100, T0)
            .expect("reopen")
            .with_dead_letters_max(1);
        let stats = q.stats(T0);
        assert_eq!((stats.dead_letters, stats.dead_letters_deleted), (1, 2));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn delivered_posts_are_counted_by_kind_and_the_oldest_pending_time_is_kept() {
        let root = temp_root("bykind");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
            .expect("push");
        q.push(&volume_post("BUSDT", VolumeAlertType::Spike), T0 + 7_000)
            .expect("push");
        let stats = q.stats(T0 + 10_000);
        assert_eq!(stats.oldest_pending_enqueued_ms, Some(T0));
        assert_eq!(stats.oldest_pending_seconds, Some(10));
        assert!(stats.delivered_by_kind.is_empty());
        let (post, _) = q.next(|_| true).expect("pending");
        q.delivered(&post, T0 + 10_000).expect("delivered");
        let stats = q.stats(T0 + 10_000);
        assert_eq!(stats.delivered_by_kind.get("volume_alert"), Some(&1));
        assert_eq!(stats.oldest_pending_enqueued_ms, Some(T0 + 7_000));
        let _ = fs::remove_dir_all(&root);
    }
}
