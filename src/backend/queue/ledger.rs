//! Recording deliveries: the delivered-keys ledger, removing delivered
//! posts' files, and the file changes a failing disk refused, kept in
//! memory and written again by [`Queue::flush`].

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{remove_file, Queue, State, StoredPost, LEDGER_FILE};
use crate::state::write_atomic;

impl Queue {
    /// [`write_atomic`], failing while the disk-full hook is set; records
    /// the outcome as the queue's disk condition.
    pub(super) fn write(&self, state: &mut State, path: &Path, bytes: &[u8]) -> io::Result<()> {
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
    pub(super) fn disk_works(&self, state: &mut State) {
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
        if post.kind == crate::backend::kind::Kind::VolumeAlert {
            crate::alert_latency::record_delivered(now_ms.saturating_sub(post.enqueued_ms));
        }
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
}
