//! Stopping without losing a request (SIGTERM, e.g. a self-update).
//!
//! Under socket activation systemd keeps the listening socket open across
//! the restart, so connections that arrive while no process accepts wait in
//! its backlog for the next process. What the socket cannot save is what
//! this process already accepted. So at shutdown:
//!
//! - the accept loop stops at once and drops its copy of the listener
//!   (systemd's copy stays open; run by hand, the port closes);
//! - a connection with a request in progress finishes it and answers with
//!   `Connection: close`;
//! - a connection with no request in progress (kept alive between
//!   requests, or just accepted) waits up to [`DRAIN_GRACE`] for one that its
//!   client may already have sent before learning that we stop, answers it
//!   with `Connection: close`, and is closed only if nothing came;
//! - after a `Connection: close` answer the connection reads and discards
//!   until its client closes (at most [`LINGER`]), so a request that crossed
//!   our answer on the wire does not turn into a reset that destroys the
//!   answer in the client's receive buffer;
//! - the whole drain is bounded by [`DRAIN_LIMIT`]: what is still open then
//!   is cut.
//!
//! A client whose next request leaves after the grace finds the connection
//! closed; that is the HTTP/1.1 keep-alive race every server has, and why
//! clients retry an idempotent request on a closed idle connection. A
//! client that keeps asking (a poller, a load test) never meets it: its
//! next request arrives within the grace and gets `Connection: close`.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::limits::HttpStats;
pub(crate) use super::limits::{DRAIN_GRACE, DRAIN_LIMIT};

/// After a last answer, how long to wait for the client to close.
pub(crate) const LINGER: Duration = Duration::from_millis(500);
/// How often the drain looks at the open-connection count.
const POLL: Duration = Duration::from_millis(10);

/// Reads and discards until the client closes, at most [`LINGER`]; the
/// caller has already shut down our side (FIN sent).
pub(crate) async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Connections open when it started.
    pub open_at_start: usize,
    /// Connections still open at [`DRAIN_LIMIT`], cut.
    pub cut: usize,
    /// How long it took.
    pub took: Duration,
}

/// Waits until every connection counted by `stats` has ended, or `limit`.
pub(crate) async fn wait_for_connections(stats: &HttpStats, limit: Duration) -> Drained {
    let started = tokio::time::Instant::now();
    let open_at_start = stats.open();
    let deadline = started + limit;
    while stats.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    Drained {
        open_at_start,
        cut: stats.open(),
        took: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::server::limits::HttpLimits;

    #[tokio::test(start_paused = true)]
    async fn the_drain_ends_when_the_last_connection_does() {
        let stats = HttpStats::new(HttpLimits::default());
        let guard = stats.open_guard();
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(guard);
        });
        let drained = wait_for_connections(&stats, DRAIN_LIMIT).await;
        let _ = closer.await;
        assert_eq!((drained.open_at_start, drained.cut), (1, 0));
        assert!(drained.took < DRAIN_LIMIT, "{drained:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_is_bounded() {
        let stats = HttpStats::new(HttpLimits::default());
        let _stuck = stats.open_guard();
        let drained = wait_for_connections(&stats, DRAIN_LIMIT).await;
        assert_eq!((drained.open_at_start, drained.cut), (1, 1));
        assert!(drained.took >= DRAIN_LIMIT, "{drained:?}");
    }

    #[test]
    fn the_drain_fits_systemds_stop_timeout() {
        // TimeoutStopSec=15, and run's own stop budget is 10 s.
        assert!(DRAIN_GRACE + LINGER < DRAIN_LIMIT);
        assert!(DRAIN_LIMIT < Duration::from_secs(10));
    }
}
