//! Opening a backend's queue: loading what a previous run left on disk
//! (pending posts, "in flight" marks, the delivered-keys ledger), moving
//! unreadable files aside and renumbering sequence numbers near their limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{
    Queue, State, StoredPost, DEFAULT_DEAD_LETTERS_MAX, IN_FLIGHT_EXT, LEDGER_FILE, RENUMBER_AT,
};
use crate::backend::dead_letters;
use crate::state::write_atomic;

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
pub(super) fn parse_seq(file_name: &str, ext: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(ext)?.strip_suffix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
