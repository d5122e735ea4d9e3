//! The pause after a 429/418: every REST call stops until `Retry-After`,
//! the ban's end, or the governor's own back-off (to the next window, then
//! doubling) has passed.

use std::time::Duration;

use tokio::time::Instant;

use super::{Permit, ResponseMeta, State, WeightGovernor};

/// Shortest pause after a 429/418, whatever the server says.
const MIN_PAUSE: Duration = Duration::from_secs(1);

impl WeightGovernor {
    /// Handles a 429/418: sets or extends the global pause.
    pub(super) fn on_rate_limited(
        &self,
        st: &mut State,
        permit: &Permit,
        meta: &ResponseMeta,
        now: Instant,
    ) -> Duration {
        st.rate_limited_total += 1;
        // Requests already in flight when the pause began don't count as repeats.
        // (No permit is granted while paused, so "after" is strict.)
        if st.pause_started.is_none_or(|p| permit.granted_at > p) {
            st.strikes = st.strikes.saturating_add(1);
        }
        let pause = self.pause_for(meta, st.strikes, now);
        let until = now + pause;
        let active = st.paused_until.is_some_and(|p| p > now);
        if !active {
            st.pauses_total += 1;
            st.pause_started = Some(now);
            tracing::warn!(
                target: "binance",
                status = meta.status,
                pause_s = pause.as_secs_f64(),
                retry_after = ?meta.retry_after,
                strikes = st.strikes,
                "weight governor: rate limited, pausing all REST calls"
            );
        }
        if st.paused_until.is_none_or(|p| until > p) {
            st.paused_until = Some(until);
        }
        st.paused_until.map_or(pause, |p| p - now)
    }

    /// How long to pause: the server's word if it gave one, else our back-off.
    fn pause_for(&self, meta: &ResponseMeta, strikes: u32, now: Instant) -> Duration {
        if let Some(ra) = meta.retry_after {
            // "Retry-After: 0" after a 429 would mean hammering on; wait a little.
            return ra.max(MIN_PAUSE);
        }
        if let Some(ms) = meta.banned_until_ms {
            let now_ms = self.unix_ms(now);
            if ms > now_ms {
                return Duration::from_millis(ms - now_ms);
            }
        }
        let backoff = self.own_backoff(strikes, now);
        if meta.status == 418 {
            backoff.max(self.config.ban_backoff)
        } else {
            backoff
        }
    }

    /// Without `Retry-After`: to the next window boundary, then one, three,
    /// seven … more windows on repeats (doubling), capped at `max_backoff`.
    fn own_backoff(&self, strikes: u32, now: Instant) -> Duration {
        let to_boundary = self.next_boundary(now) - now;
        let extra_windows = (1u64 << strikes.saturating_sub(1).min(20)) - 1;
        let extra = Duration::from_millis(self.window_ms.saturating_mul(extra_windows));
        (to_boundary + extra).min(self.config.max_backoff.max(to_boundary))
    }
}
