//! Everything the appliance sends to the VolSpike backend(s)
//! (`docs/backend.md`): typed payloads, the HTTP client, and the durable
//! outbox every job posts through.
//!
//! # For job authors: decide → enqueue → persist
//!
//! ```ignore
//! let post = Post::volume_alert(&alert);           // dedup key: symbol, hour, alertType
//! match outbox.enqueue(post).await {
//!     Ok(Enqueued::Queued | Enqueued::Duplicate) => self.state.mark_alerted(..)?, // now persist
//!     Err(e) => return Err(e.into()),               // do NOT persist; next tick decides again
//! }
//! ```
//!
//! 1. **Decide** from your persisted state that an alert is due.
//! 2. **Enqueue** it. When `enqueue` returns `Ok`, the post is fsync'd in
//!    the state directory for every target backend; it will be delivered
//!    across restarts and outages, and removed only after a 2xx.
//! 3. **Persist** your own state (e.g. "alerted BTCUSDT for 14:00").
//!
//! A crash between 2 and 3 makes the job decide the same alert again after
//! the restart; enqueueing it again returns [`Enqueued::Duplicate`] because
//! its dedup key is pending or in the delivered ledger (kept 48 h, or the
//! cooldown for OI alerts). Persisting *before* enqueueing would instead
//! lose the alert in that window. Posts without a key (samples, universe,
//! Telegram, update-checked) may be sent twice after such a crash, which
//! the backend tolerates (upserts / last-write-wins).
//!
//! An `Err` means at least one backend does not have the post (full queue,
//! disk error): do not persist; the next tick retries and backends that
//! already have it answer `Duplicate` for keyed posts.
//!
//! Delivery: one queue and loop per backend (primary, dev), so one being
//! down never delays the other; posts go out oldest first; one post that
//! keeps failing waits on its own backoff while later posts go on; retries
//! back off 1 s doubling to 30 s with jitter; 401/403 pause the backend and
//! keep every post; other 4xx, and a 5xx repeated while other posts get
//! through, move the post to the dead letters (`volspike outbox`). The
//! rules and the exact delivery guarantee are in `docs/delivery.md`.

mod client;
pub(crate) mod dead_letters;
mod delivery;
pub mod kind;
mod local;
mod outbox;
mod payloads;
mod post;
mod queue;
mod ranges;
mod recheck;

pub use crate::backoff::BackoffPolicy;
pub use client::{classify, Auth, BackendClient, GetError, SendOutcome, StatusClass};
pub use kind::Kind;
pub use local::ALERTS_FILE;
pub use outbox::{DeliveryStats, Enqueued, Outbox, OutboxError, OutboxSettings, RecentAlert};
pub use payloads::*;
pub use post::{Post, PostError, Target, DEFAULT_DEDUP_WINDOW};
pub use queue::DeliveryCondition;
