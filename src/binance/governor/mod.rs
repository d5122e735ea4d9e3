//! The one request-weight governor every REST caller goes through.
//!
//! Binance limits an IP to 2400 weight per minute and answers 429, then 418
//! (an IP ban of minutes to days) to clients that keep going. All jobs share
//! one [`WeightGovernor`] (`Arc<WeightGovernor>`) so their combined usage
//! stays under a configurable ceiling (default half the limit):
//!
//! * it counts its own sends per window, aligned to wall-clock window
//!   boundaries like Binance's minute, and reconciles with the server's
//!   `X-MBX-USED-WEIGHT-1M` figure (the larger of the two wins, so weight used
//!   by other processes on the same IP counts too);
//! * it queues callers (FIFO) until their weight fits, never rejects;
//! * after a 429/418 it stops every REST call until `Retry-After` (or its own
//!   back-off) has passed.
//!
//! Time comes from `tokio::time`, so tests run it with paused time.
//!
//! This file is the governor's state and the taking of weight; the types it
//! hands out are `types.rs`, the weight of each endpoint `weights.rs`, the
//! pauses after a 429/418 `pause.rs`.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

mod pause;
mod types;
mod weights;

pub use self::types::{GovernorConfig, GovernorStatus, Permit, ResponseMeta, BINANCE_WEIGHT_LIMIT};
pub use self::weights::weight_of;

/// Share of the ceiling always left to regular (non-yielding) callers on top
/// of their reservations: liquid_universe's 41 per 5 minutes, the funding
/// cross-check, user alerts' REST fallbacks.
const REGULAR_HEADROOM_DIVISOR: u32 = 10;
/// Yielding callers always get at least this share of the ceiling per
/// window, so a large reservation slows a sweep but never stops it.
const YIELDING_MIN_DIVISOR: u32 = 4;

/// How long a caller may wait in the queue before it is worth a log line.
const QUEUE_LOG_AFTER: Duration = Duration::from_secs(5);

/// Mutable bookkeeping, behind a std mutex never held across an `.await`.
#[derive(Debug, Default)]
struct State {
    /// Index of the window the counters below belong to.
    window_index: u64,
    /// Weight charged by this process in that window.
    own_used: u32,
    /// Highest server figure seen in that window.
    server_used: u32,
    /// No REST call before this instant.
    paused_until: Option<Instant>,
    /// When the current/last pause began: 429s for requests sent before it
    /// were already in flight and must not escalate the back-off.
    pause_started: Option<Instant>,
    /// Consecutive 429/418s (requests sent after the previous pause began).
    strikes: u32,
    /// Pauses since start.
    pauses_total: u64,
    /// Permits granted since start.
    requests_total: u64,
    /// 429/418 answers since start.
    rate_limited_total: u64,
    /// Callers waiting right now.
    queued: usize,
    /// Weight charged by yielding callers in the current window.
    yielding_used: u32,
    /// Weight per window regular callers have reserved (open_interest's polls).
    reserved: u32,
    /// Window index of the last "sweep yields" log line (one per window).
    yield_logged_window: Option<u64>,
    /// Last "queued for long" log line, to keep a backlog from flooding the log.
    last_queue_log: Option<Instant>,
}

/// The shared weight governor; see the module docs.
#[derive(Debug)]
pub struct WeightGovernor {
    /// Settings.
    config: GovernorConfig,
    /// Window length in ms (≥ 1).
    window_ms: u64,
    /// Anchors `Instant`s to unix time so windows align with wall-clock minutes.
    base_instant: Instant,
    /// Unix ms at `base_instant`.
    base_unix_ms: u64,
    /// Counters.
    state: Mutex<State>,
    /// FIFO turnstile: tokio's mutex is fair, so waiters are served in order
    /// and a heavy call (weight 40) is not starved by a stream of light ones.
    turnstile: tokio::sync::Mutex<()>,
}

impl Default for WeightGovernor {
    fn default() -> Self {
        Self::new(GovernorConfig::default())
    }
}

impl WeightGovernor {
    /// A governor with the given settings.
    pub fn new(config: GovernorConfig) -> Self {
        let window_ms = u64::try_from(config.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            config,
            window_ms,
            base_instant: Instant::now(),
            base_unix_ms,
            state: Mutex::new(State::default()),
            turnstile: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GovernorConfig {
        &self.config
    }

    /// Waits until `weight` fits under the ceiling and no pause is active,
    /// charges it, and returns the permit. Never rejects: a call heavier than
    /// the whole ceiling is let through alone at the start of a window.
    /// Cancel-safe: dropping the future leaves nothing charged.
    pub async fn acquire(&self, weight: u32) -> Permit {
        let started = Instant::now();
        let _queued = QueuedGuard::new(self);
        let _turn = self.turnstile.lock().await;
        self.wait_until_taken(started, |now| self.try_take(weight, now, false))
            .await
    }

    /// Like [`Self::acquire`] for a caller that yields to regular ones: a
    /// burst that may spill into the next window (the volume sweep). Per
    /// window, yielding callers together get at most the ceiling minus the
    /// reservations ([`Self::reserve`]) and a tenth for other regular
    /// traffic, so a sweep never holds back an open-interest poll: what does
    /// not fit waits for the next window. Yielding callers do not take the
    /// FIFO turnstile, so while they wait for a window, regular callers pass.
    pub async fn acquire_yielding(&self, weight: u32) -> Permit {
        let started = Instant::now();
        let _queued = QueuedGuard::new(self);
        self.wait_until_taken(started, |now| self.try_take(weight, now, true))
            .await
    }

    /// Tries `take` until it grants, sleeping until the instant each refusal
    /// names; logs a long wait. The one loop behind both kinds of caller.
    async fn wait_until_taken(
        &self,
        started: Instant,
        take: impl Fn(Instant) -> Result<Permit, Instant>,
    ) -> Permit {
        loop {
            match take(Instant::now()) {
                Ok(permit) => {
                    self.log_long_wait(started, permit.granted_at);
                    return permit;
                }
                Err(wake_at) => tokio::time::sleep_until(wake_at).await,
            }
        }
    }

    /// Reserves `weight_per_window` for a regular caller's recurring work
    /// (open_interest's polls); replaces the previous reservation. Yielding
    /// callers leave it free.
    pub fn reserve(&self, weight_per_window: u32) {
        self.lock().reserved = weight_per_window;
    }

    /// What yielding callers may take per window (see [`Self::acquire_yielding`]).
    pub fn yielding_cap(&self) -> u32 {
        let reserved = self.lock().reserved;
        self.cap_for(reserved)
    }

    fn cap_for(&self, reserved: u32) -> u32 {
        let ceiling = self.config.ceiling;
        let headroom = ceiling / REGULAR_HEADROOM_DIVISOR;
        ceiling
            .saturating_sub(reserved.saturating_add(headroom))
            .max(ceiling / YIELDING_MIN_DIVISOR)
            .max(1)
    }

    /// Feeds a response back: the server's used-weight figure, and 429/418
    /// pauses. Returns the pause now in force when the response was a 429/418.
    pub fn observe(&self, permit: &Permit, meta: &ResponseMeta) -> Option<Duration> {
        let now = Instant::now();
        let mut st = self.lock();
        self.roll_window(&mut st, now);
        if let Some(used) = meta.used_weight_1m {
            st.server_used = st.server_used.max(used);
        }
        match meta.status {
            429 | 418 => Some(self.on_rate_limited(&mut st, permit, meta, now)),
            _ => {
                // A normal answer to a request sent after the last pause
                // began means the back-off worked: start doubling afresh.
                if st.pause_started.is_none_or(|p| permit.granted_at > p) {
                    st.strikes = 0;
                }
                None
            }
        }
    }

    /// A snapshot for health and metrics.
    pub fn status(&self) -> GovernorStatus {
        let now = Instant::now();
        let mut st = self.lock();
        self.roll_window(&mut st, now);
        GovernorStatus {
            used_in_window: st.own_used.max(st.server_used),
            own_used_in_window: st.own_used,
            server_used_in_window: st.server_used,
            ceiling: self.config.ceiling,
            limit: self.config.limit,
            window_ms: self.window_ms,
            paused_until: st
                .paused_until
                .filter(|p| *p > now)
                .map(|p| self.unix_ms(p)),
            pauses_total: st.pauses_total,
            queued: st.queued,
            requests_total: st.requests_total,
            rate_limited_total: st.rate_limited_total,
            reserved_per_window: st.reserved,
            yielding_cap: self.cap_for(st.reserved),
            yielding_used_in_window: st.yielding_used,
        }
    }

    /// The ceiling scaled to one minute (equal to `ceiling` with the default window).
    pub fn ceiling_per_minute(&self) -> f64 {
        f64::from(self.config.ceiling) * 60_000.0 / self.window_ms as f64
    }

    /// Whether `weight_per_minute` fits under the ceiling at all. A job that
    /// would exceed it should stretch its interval ([`Self::min_interval_for`]).
    pub fn can_fit_per_minute(&self, weight_per_minute: u32) -> bool {
        f64::from(weight_per_minute) <= self.ceiling_per_minute()
    }

    /// The shortest interval between runs of a job that spends
    /// `weight_per_run` each time and may use `share` (0..=1) of the ceiling.
    /// E.g. open_interest with 800 symbols and share 0.5 of 1200/min → 80 s.
    pub fn min_interval_for(&self, weight_per_run: u32, share: f64) -> Duration {
        let share = if share.is_finite() && share > 0.0 {
            share.min(1.0)
        } else {
            1.0
        };
        let budget = f64::from(self.config.ceiling) * share;
        let windows = f64::from(weight_per_run) / budget;
        Duration::from_secs_f64(self.config.window.as_secs_f64() * windows)
    }

    /// Charges `weight` if it fits now under the ceiling (and, for a
    /// yielding caller, under the yielding cap), else says when to look again.
    fn try_take(&self, weight: u32, now: Instant, yielding: bool) -> Result<Permit, Instant> {
        let mut st = self.lock();
        self.roll_window(&mut st, now);
        if let Some(until) = st.paused_until {
            if until > now {
                return Err(until);
            }
            st.paused_until = None;
            tracing::info!(target: "binance", "weight governor: pause over, REST calls resume");
        }
        let cap = self.cap_for(st.reserved);
        let used = st.own_used.max(st.server_used);
        let ceiling = self.config.ceiling;
        let over_cap = yielding && st.yielding_used.saturating_add(weight.min(cap)) > cap;
        if over_cap && st.yield_logged_window != Some(st.window_index) {
            st.yield_logged_window = Some(st.window_index);
            tracing::info!(
                target: "binance",
                yielding_cap = cap,
                reserved = st.reserved,
                "weight governor: the sweep reached its {cap} weight for this window; the rest waits for the next one, keeping {} reserved for open_interest",
                st.reserved
            );
        }
        if over_cap || used.saturating_add(weight.min(ceiling)) > ceiling {
            return Err(self.next_boundary(now));
        }
        st.own_used = st.own_used.saturating_add(weight);
        if yielding {
            st.yielding_used = st.yielding_used.saturating_add(weight);
        }
        st.requests_total += 1;
        Ok(Permit {
            weight,
            granted_at: now,
            window_index: st.window_index,
        })
    }

    /// Starts a fresh count when `now` is in a later window.
    fn roll_window(&self, st: &mut State, now: Instant) {
        let idx = self.window_index(now);
        if idx != st.window_index {
            st.window_index = idx;
            st.own_used = 0;
            st.server_used = 0;
            st.yielding_used = 0;
        }
    }

    /// Logs (throttled) when a caller waited long for weight or a pause.
    fn log_long_wait(&self, started: Instant, granted: Instant) {
        let waited = granted - started;
        if waited < QUEUE_LOG_AFTER {
            return;
        }
        let mut st = self.lock();
        if st
            .last_queue_log
            .is_some_and(|t| granted - t < QUEUE_LOG_AFTER * 2)
        {
            return;
        }
        st.last_queue_log = Some(granted);
        tracing::info!(
            target: "binance",
            waited_s = waited.as_secs_f64(),
            still_queued = st.queued.saturating_sub(1),
            "weight governor: request queued for weight budget"
        );
    }

    /// Unix ms of an instant.
    fn unix_ms(&self, t: Instant) -> u64 {
        let since = u64::try_from(t.saturating_duration_since(self.base_instant).as_millis())
            .unwrap_or(u64::MAX);
        self.base_unix_ms.saturating_add(since)
    }

    /// Window index of an instant.
    fn window_index(&self, t: Instant) -> u64 {
        self.unix_ms(t) / self.window_ms
    }

    /// The instant the window after `now`'s begins.
    fn next_boundary(&self, now: Instant) -> Instant {
        let now_ms = self.unix_ms(now);
        let boundary_ms = (now_ms / self.window_ms + 1) * self.window_ms;
        now + Duration::from_millis(boundary_ms - now_ms)
    }

    /// Locks the counters; a poisoned lock (a panic elsewhere) still holds
    /// consistent integers, so keep going rather than take every job down.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a caller as queued for as long as it waits (also when cancelled).
struct QueuedGuard<'a>(&'a WeightGovernor);

impl<'a> QueuedGuard<'a> {
    /// Registers a waiter.
    fn new(gov: &'a WeightGovernor) -> Self {
        gov.lock().queued += 1;
        Self(gov)
    }
}

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.queued = st.queued.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests;
