//! The queue's side of dead letters: setting a refused post aside, the cap
//! on how many are kept, and queueing again those an operator asked to
//! replay (the files themselves are [`crate::backend::dead_letters`]).

use std::fs;
use std::io;
use std::sync::atomic::Ordering;

use super::{Pushed, Queue, State, StoredPost};
use crate::backend::dead_letters::{self, DeadLetter};

impl Queue {
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
}
