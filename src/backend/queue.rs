//! One backend's durable queue: the pending posts on disk, the ledger of
//! delivered dedup keys, shedding when full, and the counters for `/health`.
//!
//! Layout under the state directory (one directory per backend):
//! ```text
//! outbox/<backend>/<seq, 16 digits>.json   one pending post each
//! outbox/<backend>/delivered.json          dedup key → suppressed-until (unix ms)
//! ```
//! Every write goes through [`crate::state::write_atomic`] (temp file, fsync,
//! rename, directory fsync), so a `kill -9` at any point leaves either the
//! old or the new file, never half of one.
//!
//! This file does no network I/O: the delivery loop asks it for the next
//! post and reports the outcome back.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::Auth;
use super::post::{Kind, Post};
use crate::state::write_atomic;

/// Name of the delivered-keys ledger inside a backend's directory.
const LEDGER_FILE: &str = "delivered.json";

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

/// Counters since start, and the backlog, for `/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Posts waiting.
    pub pending: usize,
    /// Age in seconds of the oldest waiting post; `None` when empty.
    pub oldest_pending_seconds: Option<u64>,
    /// Posts the backend accepted (2xx).
    pub delivered: u64,
    /// Failed attempts that will be retried (network, timeout, 5xx, 429).
    pub retried: u64,
    /// Posts the backend rejected with a 4xx, dropped.
    pub dropped: u64,
    /// Sample posts discarded to make room.
    pub shed: u64,
    /// Posts refused because the queue was full of alerts.
    pub refused: u64,
    /// The last failure, for the operator.
    pub last_error: Option<String>,
}

/// In-memory mirror of the directory, behind the queue's lock.
#[derive(Debug, Default)]
struct State {
    /// Pending posts by sequence number: delivery order.
    pending: BTreeMap<u64, Arc<StoredPost>>,
    /// Dedup key → sequence number of the pending post holding it.
    pending_keys: HashMap<String, u64>,
    /// Delivered key → suppressed until (unix ms); persisted.
    delivered: BTreeMap<String, u64>,
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
    /// Everything mutable.
    state: Mutex<State>,
}

impl Queue {
    /// Opens (creating) the directory and loads what a previous run left:
    /// pending posts in sequence order, and the ledger. A post whose key the
    /// ledger already holds was delivered just before a crash: it is removed.
    pub fn open(
        root: &Path,
        name: &'static str,
        capacity: usize,
        now_ms: u64,
    ) -> io::Result<Queue> {
        let dir = root.join("outbox").join(name);
        fs::create_dir_all(&dir)?;
        // A freshly created directory entry must survive a power cut too.
        if let Some(parent) = dir.parent() {
            fs::File::open(parent)?.sync_all()?;
        }
        let queue = Queue {
            name,
            dir,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        };
        let mut state = queue.lock();
        state.delivered = queue.load_ledger(now_ms);
        let mut max_seq = 0;
        for entry in fs::read_dir(&queue.dir)? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') && file_name.contains(".tmp.") {
                // A write interrupted by a crash; its post was never
                // acknowledged to the job, which re-decides it.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = parse_seq(&file_name) else {
                continue;
            };
            max_seq = max_seq.max(seq);
            match fs::read(entry.path())
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
                            let _ = fs::remove_file(entry.path());
                            continue;
                        }
                        state.pending_keys.insert(key.clone(), seq);
                    }
                    state.pending.insert(seq, Arc::new(post));
                }
                Ok(post) => {
                    tracing::error!(backend = name, file = %entry.path().display(), stored_seq = post.seq, "outbox file name and content disagree; ignoring it")
                }
                Err(e) => {
                    // Keep the bytes for the operator, out of the queue's way.
                    let aside = entry.path().with_extension("corrupt");
                    tracing::error!(backend = name, file = %entry.path().display(), error = %e, "unreadable outbox file; moved aside to {}", aside.display());
                    let _ = fs::rename(entry.path(), aside);
                }
            }
        }
        state.next_seq = max_seq + 1;
        if !state.pending.is_empty() {
            tracing::info!(
                backend = name,
                pending = state.pending.len(),
                "outbox: resending what a previous run left undelivered"
            );
        }
        drop(state);
        Ok(queue)
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

    /// Writes `post` to disk (fsync'd) and queues it, unless it is a
    /// duplicate or the queue is full of posts that may not be shed.
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
        if state.pending.len() >= self.capacity {
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
                        post.label
                    );
                }
                None => {
                    state.stats.refused += 1;
                    tracing::error!(
                        backend = self.name,
                        capacity = self.capacity,
                        "outbox full of undelivered alerts: refused the newest, {}",
                        post.label
                    );
                    return Ok(Pushed::Refused);
                }
            }
        }
        let seq = state.next_seq;
        let stored = StoredPost {
            seq,
            enqueued_ms: now_ms,
            kind: post.kind,
            path: post.path.to_string(),
            auth: post.auth,
            key: post.dedup.as_ref().map(|d| d.key.clone()),
            dedup_until_ms: post.dedup.as_ref().map_or(0, |d| {
                now_ms.saturating_add(d.window.as_millis().min(u64::MAX as u128) as u64)
            }),
            label: post.label.clone(),
            body: post.body.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        // Durable before anyone is told it is queued.
        write_atomic(&self.file(seq), &bytes)?;
        state.next_seq += 1;
        if let Some(key) = &stored.key {
            state.pending_keys.insert(key.clone(), seq);
        }
        state.pending.insert(seq, Arc::new(stored));
        Ok(Pushed::Queued(seq))
    }

    /// The oldest pending post whose route `blocked` does not hold back.
    pub fn next(&self, blocked: impl Fn(&str) -> bool) -> Option<Arc<StoredPost>> {
        let state = self.lock();
        state.pending.values().find(|p| !blocked(&p.path)).cloned()
    }

    /// The backend accepted `post`: record its key in the ledger (durably),
    /// then delete its file. A crash between the two leaves a file whose key
    /// the ledger holds; [`Queue::open`] removes it instead of resending.
    pub fn delivered(&self, post: &StoredPost, now_ms: u64) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(key) = &post.key {
            state.delivered.insert(key.clone(), post.dedup_until_ms);
            state.delivered.retain(|_, until| *until > now_ms);
            let bytes = serde_json::to_vec(&state.delivered).map_err(io::Error::other)?;
            write_atomic(&self.dir.join(LEDGER_FILE), &bytes)?;
        }
        self.forget(&mut state, post)?;
        state.stats.delivered += 1;
        Ok(())
    }

    /// The backend rejected `post` for good: delete it.
    pub fn rejected(&self, post: &StoredPost, error: String) -> io::Result<()> {
        let mut state = self.lock();
        self.forget(&mut state, post)?;
        state.stats.dropped += 1;
        state.stats.last_error = Some(error);
        Ok(())
    }

    /// An attempt failed and will be repeated.
    pub fn retried(&self, error: String) {
        let mut state = self.lock();
        state.stats.retried += 1;
        state.stats.last_error = Some(error);
    }

    /// Removes `post`'s file and in-memory entry (it may already be gone:
    /// shed while in flight).
    fn forget(&self, state: &mut State, post: &StoredPost) -> io::Result<()> {
        // No directory fsync: a removal lost to a power cut resends a post
        // whose key the ledger holds (skipped) or an idempotent one.
        remove_file(&self.file(post.seq))?;
        state.pending.remove(&post.seq);
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
        stats.oldest_pending_seconds = state
            .pending
            .values()
            .map(|p| p.enqueued_ms)
            .min()
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

/// `0000000000000042.json` → 42.
fn parse_seq(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(".json")?;
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
                    .is_ok_and(|e| parse_seq(&e.file_name().to_string_lossy()).is_some())
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
    fn next_skips_blocked_routes_but_keeps_order_within_a_route() {
        let root = temp_root("lanes");
        let q = Queue::open(&root, "primary", 100, T0).expect("open");
        q.push(&samples(1), T0).expect("push");
        q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
            .expect("push");
        q.push(&samples(2), T0).expect("push");
        let head = q.next(|_| false).expect("head");
        assert!(head.label.contains("sample-1"));
        let other = q
            .next(|path| path == "/api/market/open-interest/ingest")
            .expect("other route");
        assert!(other.label.contains("AUSDT"));
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
}
