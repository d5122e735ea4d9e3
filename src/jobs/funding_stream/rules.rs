//! The funding stream's rules, pure so they are tested without a socket:
//! when a connection ends (shutdown, the planned replacement before
//! Binance's 24 h cut-off, silence), when a connection was healthy enough to
//! reset the backoff, and what the `/health` record says and when it is
//! rewritten. The run loop in [`super`] reads the socket and acts on them.

use std::time::Duration;

use super::status::StreamState;

/// A connection that carried data for this long resets the backoff.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How often the `/health` record is refreshed while nothing changes.
pub(crate) const BOARD_EVERY: Duration = Duration::from_secs(5);

/// Why a connection ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Ended {
    /// Shutdown: close frame sent.
    Shutdown,
    /// Replaced on purpose before the 24 h cut-off.
    Planned,
    /// Closed, failed or silent; the reason is logged and shown.
    Lost(String),
    /// The connection could not be opened (DNS, refused, TLS, handshake):
    /// logged as an outage, not line by line.
    Unreachable(String),
}

/// How long a connection may live and stay silent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    /// Replaced on purpose after this (before the server's 24 h cut-off).
    pub(crate) max_age: Duration,
    /// Dead when no data message arrived for this long.
    pub(crate) silence: Duration,
}

/// Whether a connection open for `age`, whose last data came `since_data`
/// ago, ends now, and why. Shutdown first, then the planned replacement,
/// then silence (a retired URL connects but sends nothing).
pub(crate) fn session_end(
    shutdown: bool,
    age: Duration,
    since_data: Duration,
    limits: SessionLimits,
) -> Option<Ended> {
    if shutdown {
        Some(Ended::Shutdown)
    } else if age >= limits.max_age {
        Some(Ended::Planned)
    } else if since_data >= limits.silence {
        Some(Ended::Lost(format!(
            "no data for {} s (a retired URL connects but sends nothing)",
            since_data.as_secs()
        )))
    } else {
        None
    }
}

/// Whether a connection that lasted `lasted` resets the backoff: only one
/// that carried data for a while, so a link that connects and then drops
/// at once keeps backing off.
pub(crate) fn resets_backoff(got_data: bool, lasted: Duration) -> bool {
    got_data && lasted >= HEALTHY_AFTER
}

/// Whether the stream is healthy: data within `grace`, and not stopped.
pub(crate) fn healthy(since_healthy: Duration, grace: Duration, state: StreamState) -> bool {
    since_healthy < grace && state != StreamState::Stopped
}

/// Whether the `/health` record is rewritten: when forced, when health
/// flipped, and every [`BOARD_EVERY`] to refresh the summary.
pub(crate) fn board_due(
    force: bool,
    last_ok: Option<bool>,
    ok: bool,
    since_written: Option<Duration>,
) -> bool {
    force || last_ok != Some(ok) || since_written.is_none_or(|d| d >= BOARD_EVERY)
}

/// The state as the `/health` summary says it.
pub(crate) fn state_word(state: StreamState) -> &'static str {
    match state {
        StreamState::Connected => "connected",
        StreamState::Connecting => "connecting",
        StreamState::Backoff => "waiting to reconnect",
        StreamState::Stopped => "stopped",
        StreamState::Disabled => "disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SessionLimits = SessionLimits {
        max_age: Duration::from_secs(23 * 3600),
        silence: Duration::from_secs(30),
    };
    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_session_ends_on_shutdown_age_or_silence() {
        assert_eq!(session_end(false, S(100), S(1), LIMITS), None);
        assert_eq!(
            session_end(true, S(23 * 3600), S(31), LIMITS),
            Some(Ended::Shutdown),
            "shutdown wins"
        );
        assert_eq!(
            session_end(false, S(23 * 3600), S(31), LIMITS),
            Some(Ended::Planned),
            "the planned replacement before silence"
        );
        assert!(matches!(
            session_end(false, S(100), S(30), LIMITS),
            Some(Ended::Lost(why)) if why.contains("no data for 30 s")
        ));
    }

    #[test]
    fn only_a_lasting_data_link_resets_the_backoff() {
        assert!(resets_backoff(true, HEALTHY_AFTER));
        assert!(!resets_backoff(true, S(59)));
        assert!(!resets_backoff(false, S(3600)));
    }

    #[test]
    fn health_and_when_the_record_is_written() {
        assert!(healthy(S(4), S(60), StreamState::Backoff));
        assert!(!healthy(S(60), S(60), StreamState::Connected));
        assert!(!healthy(S(0), S(60), StreamState::Stopped));
        assert!(board_due(false, None, true, None), "first record");
        assert!(!board_due(false, Some(true), true, Some(S(1))));
        assert!(board_due(false, Some(true), false, Some(S(1))), "flip");
        assert!(board_due(false, Some(true), true, Some(BOARD_EVERY)));
        assert!(board_due(true, Some(true), true, Some(S(0))));
        assert_eq!(state_word(StreamState::Backoff), "waiting to reconnect");
    }
}
