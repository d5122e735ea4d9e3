//! The HTTP server's limits and counters, shared with `/health` and
//! `/metrics` so every limit is visible where an operator looks.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::head::HeadLimits;

/// Connections served at once unless the file-descriptor limit is lower.
pub const MAX_CONNECTIONS: usize = 256;
/// File descriptors kept free for everything else (Binance, the backend,
/// the state files, the journal) when sizing the connection cap.
pub const FD_RESERVE: u64 = 128;
/// Longest request line; a batch of 1,000 symbols fits.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// Requests waiting for a handler thread; beyond this, new requests get 503.
pub const MAX_QUEUED: usize = 64;
/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 32 * 1024;
/// Time a client has to send a whole request head, counted from the
/// connection (or the previous reply, on a kept-alive connection).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a reply may take to be written; a client that does not read is cut.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, how long a connection with no request in progress waits
/// for one that its client may already have sent (answered with
/// `Connection: close`) before it is closed; see [`super::drain`].
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// At shutdown, the longest the server waits for its connections to finish
/// before the rest are cut (well within the unit's `TimeoutStopSec=15`).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// The limits one server runs with.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpLimits {
    /// Open connections at most; one more evicts the oldest connection
    /// waiting on its client, or is answered 503 when every connection is
    /// busy in a handler.
    pub max_connections: usize,
    /// Longest request line (414 beyond).
    pub max_request_line_bytes: usize,
    /// Longest request head (431 beyond).
    pub max_head_bytes: usize,
    /// Seconds a client has to send a request head.
    pub head_timeout_seconds: u64,
    /// Seconds a reply may take to be written.
    pub write_timeout_seconds: u64,
    /// At shutdown, seconds an idle connection waits for a request already
    /// on its way before it is closed.
    pub drain_grace_seconds: u64,
    /// At shutdown, seconds the server waits for its connections to finish.
    pub drain_limit_seconds: u64,
    /// At start under socket activation, seconds the process waited at most
    /// for the first funding data before accepting (0: it did not wait).
    pub first_data_wait_seconds: u64,
    /// Handler threads.
    pub workers: usize,
    /// Requests waiting for a handler; beyond it, 503.
    pub max_queued: usize,
}

impl HttpLimits {
    /// The limits for `workers` handler threads under a file-descriptor
    /// limit of `nofile` (the soft `RLIMIT_NOFILE`).
    pub fn new(workers: usize, nofile: u64) -> HttpLimits {
        let by_fds = nofile.saturating_sub(FD_RESERVE).max(16);
        HttpLimits {
            max_connections: MAX_CONNECTIONS.min(usize::try_from(by_fds).unwrap_or(usize::MAX)),
            max_request_line_bytes: MAX_REQUEST_LINE,
            max_head_bytes: MAX_HEAD,
            head_timeout_seconds: HEAD_TIMEOUT.as_secs(),
            write_timeout_seconds: WRITE_TIMEOUT.as_secs(),
            drain_grace_seconds: DRAIN_GRACE.as_secs(),
            drain_limit_seconds: DRAIN_LIMIT.as_secs(),
            first_data_wait_seconds: 0,
            workers: workers.max(1),
            max_queued: MAX_QUEUED,
        }
    }

    /// The head parser's part of the limits.
    pub(crate) fn head(&self) -> HeadLimits {
        HeadLimits {
            max_request_line: self.max_request_line_bytes,
            max_head: self.max_head_bytes,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::new(4, 1024)
    }
}

/// Counters of what the limits did; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HttpStats {
    inner: Arc<Counters>,
}

/// The limits (set once) and one counter per [`Event`], plus open connections.
#[derive(Debug, Default)]
struct Counters {
    limits: std::sync::OnceLock<HttpLimits>,
    open: AtomicUsize,
    accepted: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    head_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
    rejected_heads: AtomicU64,
    accept_errors: AtomicU64,
}

/// What `/health` shows of the server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpView {
    /// The limits in force.
    pub limits: HttpLimits,
    /// Connections open now.
    pub open_connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections waiting on their client (for a head, or to read a
    /// reply) closed to make room for a new one at the cap.
    pub evicted: u64,
    /// Connections answered 503 at once: at the cap with none evictable.
    pub refused: u64,
    /// Connections closed because the head did not arrive in time.
    pub head_timeouts: u64,
    /// Connections closed because the reply could not be written in time.
    pub write_timeouts: u64,
    /// Heads refused: too long (414/431), malformed (400), HTTP/2 (505).
    pub rejected_heads: u64,
    /// Failed `accept` calls (e.g. out of file descriptors), each followed
    /// by a short back-off.
    pub accept_errors: u64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// A connection was accepted.
    Accepted,
    /// A connection waiting on its client was closed to make room.
    Evicted,
    /// A connection was answered 503 at the cap.
    Refused,
    /// A head did not arrive in time.
    HeadTimeout,
    /// A reply was not read in time.
    WriteTimeout,
    /// A head was refused (400, 414, 431, 505).
    RejectedHead,
    /// `accept` failed.
    AcceptError,
}

impl HttpStats {
    /// Stats of a server running with `limits`.
    pub fn new(limits: HttpLimits) -> HttpStats {
        let stats = HttpStats::default();
        let _ = stats.inner.limits.set(limits);
        stats
    }

    /// The limits in force.
    pub fn limits(&self) -> HttpLimits {
        self.inner.limits.get().copied().unwrap_or_default()
    }

    pub(crate) fn count(&self, event: Event) {
        let c = &self.inner;
        let counter = match event {
            Event::Accepted => &c.accepted,
            Event::Evicted => &c.evicted,
            Event::Refused => &c.refused,
            Event::HeadTimeout => &c.head_timeouts,
            Event::WriteTimeout => &c.write_timeouts,
            Event::RejectedHead => &c.rejected_heads,
            Event::AcceptError => &c.accept_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection open until the guard drops.
    pub(crate) fn open_guard(&self) -> OpenGuard {
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            stats: self.clone(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// The `/health` (and `/metrics`) view.
    pub fn view(&self) -> HttpView {
        let c = &self.inner;
        HttpView {
            limits: self.limits(),
            open_connections: self.open(),
            accepted: c.accepted.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            head_timeouts: c.head_timeouts.load(Ordering::Relaxed),
            write_timeouts: c.write_timeouts.load(Ordering::Relaxed),
            rejected_heads: c.rejected_heads.load(Ordering::Relaxed),
            accept_errors: c.accept_errors.load(Ordering::Relaxed),
        }
    }
}

/// Decrements the open-connection count when the connection ends.
pub(crate) struct OpenGuard {
    stats: HttpStats,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.inner.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        assert_eq!(HttpLimits::new(4, 1024).max_connections, MAX_CONNECTIONS);
        assert_eq!(HttpLimits::new(4, 256).max_connections, 128);
        assert_eq!(HttpLimits::new(4, 10).max_connections, 16);
    }

    #[test]
    fn open_connections_are_counted_until_dropped() {
        let stats = HttpStats::new(HttpLimits::default());
        let a = stats.open_guard();
        let b = stats.open_guard();
        assert_eq!(stats.open(), 2);
        drop(a);
        stats.count(Event::Evicted);
        let view = stats.view();
        assert_eq!((view.open_connections, view.evicted), (1, 1));
        drop(b);
        assert_eq!(stats.open(), 0);
    }
}
