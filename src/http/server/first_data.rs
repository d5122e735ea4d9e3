//! At start under socket activation: accept only once the funding cache
//! holds data, bounded.
//!
//! A new process (after a self-update, a rollback, a restart) has an empty
//! funding cache until its WebSocket delivers the first `markPrice` frame,
//! about a second. Serving at once answered every funding request in that
//! second with 503 "no funding data yet" (7.6 % of a load test's requests
//! across a swap). With the listener held by systemd, a connection that is
//! not accepted yet is not refused: it waits in the socket's backlog. So the
//! process waits up to [`FIRST_DATA_WAIT`] for the first data before it
//! accepts and before it says READY (READY then means "serving with data",
//! and self-update's READY-to-`/health` check and its downtime figure see
//! what clients see).
//!
//! Chosen over saving the cache at stop and loading it at start: that
//! serves prices from before the restart as if current and needs a file
//! format and its failure modes; waiting costs the clients nothing they
//! would not have waited anyway (the 503s came instead of the data).
//!
//! Not when the process bound the port itself (run by hand: a connection
//! would be refused, not queued, so serve at once) nor without the funding
//! stream (no data will come). If Binance is unreachable the wait ends at
//! the bound and the API answers 503 as before; `/health` says why.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::binance::cache::FundingCache;

/// The longest a start waits for funding data before accepting.
pub const FIRST_DATA_WAIT: Duration = Duration::from_secs(5);
/// How often the cache is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// How long to wait at most: [`FIRST_DATA_WAIT`] when the listener is
/// systemd's and the funding stream runs, else zero.
pub fn bound(listener_from_systemd: bool, funding_stream: bool) -> Duration {
    if listener_from_systemd && funding_stream {
        FIRST_DATA_WAIT
    } else {
        Duration::ZERO
    }
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// No wait asked (bound zero).
    NotAsked,
    /// Data arrived after this long.
    Data(Duration),
    /// None within the bound.
    TimedOut,
    /// `cancel` completed first (a stop signal).
    Cancelled,
}

/// Waits until `cache` serves a funding entry, `bound` passes or `cancel`
/// completes.
pub async fn wait(
    cache: &FundingCache,
    bound: Duration,
    cancel: impl Future<Output = ()>,
) -> Waited {
    if bound.is_zero() {
        return Waited::NotAsked;
    }
    let started = Instant::now();
    let has_data = || {
        let now_ms = crate::clock::unix_ms(crate::clock::now());
        cache.snapshot(now_ms).newest_ms.is_some()
    };
    let poll = async {
        loop {
            if has_data() {
                return Waited::Data(started.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        waited = tokio::time::timeout(bound, poll) => waited.unwrap_or(Waited::TimedOut),
        _ = cancel => Waited::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::frames::{MarkValues, Update, Values};

    fn mark(cache: &FundingCache) {
        let now = crate::clock::unix_ms(crate::clock::now());
        cache.apply(
            &[Update {
                symbol: "BTCUSDT".into(),
                event_time: Some(now),
                values: Values::Mark(MarkValues {
                    mark_price: Some(65_000.0),
                    index_price: Some(65_000.0),
                    funding_rate: Some(0.0001),
                    next_funding_time: Some(now + 3_600_000),
                }),
            }],
            now,
        );
        cache.rebuild(now);
    }

    #[test]
    fn only_a_systemd_socket_with_the_stream_waits() {
        assert_eq!(bound(true, true), FIRST_DATA_WAIT);
        assert_eq!(bound(false, true), Duration::ZERO);
        assert_eq!(bound(true, false), Duration::ZERO);
        assert!(FIRST_DATA_WAIT <= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_wait_ends_when_data_arrives() {
        let cache = FundingCache::new();
        let writer = cache.clone();
        let feed = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            mark(&writer);
        });
        let waited = wait(&cache, FIRST_DATA_WAIT, std::future::pending()).await;
        let _ = feed.await;
        assert!(matches!(waited, Waited::Data(_)), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded_and_cancellable() {
        let cache = FundingCache::new();
        let bound = Duration::from_millis(300);
        assert_eq!(
            wait(&cache, bound, std::future::pending()).await,
            Waited::TimedOut
        );
        assert_eq!(wait(&cache, bound, async {}).await, Waited::Cancelled);
        assert_eq!(
            wait(&cache, Duration::ZERO, std::future::pending()).await,
            Waited::NotAsked
        );
    }
}
