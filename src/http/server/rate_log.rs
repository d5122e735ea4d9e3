//! A warning logged at most once a minute with the count of what it
//! skipped, for causes that can repeat thousands of times a second (accept
//! errors, a full server). A leaf of the server.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one warning of a kind per this period.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// A warning logged at most once per [`LOG_EVERY`], with how many times
/// its cause happened since the last one.
#[derive(Debug, Default)]
pub(crate) struct RateLimitedLog {
    /// When the last line was logged, and the occurrences since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    /// Counts one occurrence; calls `log` with the count when due.
    pub fn warn(&self, log: impl FnOnce(u64)) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.1 += 1;
        if state.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            log(state.1);
            *state = (Some(Instant::now()), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_warnings_count_what_they_skip() {
        let log = RateLimitedLog::default();
        let mut seen = Vec::new();
        for _ in 0..3 {
            log.warn(|n| seen.push(n));
        }
        assert_eq!(seen, vec![1], "only the first of a burst is logged");
    }
}
