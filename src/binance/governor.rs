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

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use super::endpoint::Endpoint;

/// Binance's request-weight limit per minute per IP.
pub const BINANCE_WEIGHT_LIMIT: u32 = 2400;

/// Shortest pause after a 429/418, whatever the server says.
const MIN_PAUSE: Duration = Duration::from_secs(1);

/// Share of the ceiling always left to regular (non-yielding) callers on top
/// of their reservations: liquid_universe's 41 per 5 minutes, the funding
/// cross-check, user alerts' REST fallbacks.
const REGULAR_HEADROOM_DIVISOR: u32 = 10;
/// Yielding callers always get at least this share of the ceiling per
/// window, so a large reservation slows a sweep but never stops it.
const YIELDING_MIN_DIVISOR: u32 = 4;

/// How long a caller may wait in the queue before it is worth a log line.
const QUEUE_LOG_AFTER: Duration = Duration::from_secs(5);

/// Request weight of one call, per the table in `docs/binance.md`.
///
/// `params` are the query parameters; a `symbol` parameter makes the
/// all-symbol endpoints cheap, and `limit` sets the klines weight.
pub fn weight_of(endpoint: Endpoint, params: &[(&str, &str)]) -> u32 {
    let has_symbol = params.iter().any(|(k, _)| *k == "symbol");
    match endpoint {
        Endpoint::ExchangeInfo | Endpoint::OpenInterest => 1,
        Endpoint::Ticker24h => single_or_all(has_symbol, 40),
        Endpoint::TickerPrice => single_or_all(has_symbol, 2),
        Endpoint::PremiumIndex => single_or_all(has_symbol, 10),
        Endpoint::Klines => klines_weight(params),
    }
}

/// Weight 1 with `symbol`, `all` without.
fn single_or_all(has_symbol: bool, all: u32) -> u32 {
    if has_symbol {
        1
    } else {
        all
    }
}

/// Klines weight by `limit` (Binance's default limit is 500). An unparsable
/// limit is charged the maximum, erring on the safe side.
fn klines_weight(params: &[(&str, &str)]) -> u32 {
    let limit = match params.iter().find(|(k, _)| *k == "limit") {
        None => 500,
        Some((_, v)) => v.parse::<u32>().unwrap_or(u32::MAX),
    };
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// Settings of a [`WeightGovernor`].
#[derive(Debug, Clone, PartialEq)]
pub struct GovernorConfig {
    /// Binance's limit per window (2400 per minute); reported, not enforced.
    pub limit: u32,
    /// What the governor lets through per window (default 50% of `limit`).
    pub ceiling: u32,
    /// Window length (60 s like Binance's; shorter in tests).
    pub window: Duration,
    /// Longest self-chosen pause after repeated 429s without `Retry-After`.
    pub max_backoff: Duration,
    /// Shortest pause after a 418 (IP ban) without `Retry-After`.
    pub ban_backoff: Duration,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        Self::with_fraction(BINANCE_WEIGHT_LIMIT, 0.5, Duration::from_secs(60))
    }
}

impl GovernorConfig {
    /// A config whose ceiling is `fraction` (0..=1) of `limit` per `window`.
    pub fn with_fraction(limit: u32, fraction: f64, window: Duration) -> Self {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.5
        };
        Self {
            limit,
            ceiling: ((f64::from(limit) * fraction).floor() as u32).max(1),
            window,
            max_backoff: Duration::from_secs(300),
            ban_backoff: Duration::from_secs(120),
        }
    }
}

/// Proof that weight was charged; hand it back to [`WeightGovernor::observe`]
/// with the response so the governor knows when the request was sent.
#[derive(Debug, Clone)]
pub struct Permit {
    /// Weight charged.
    weight: u32,
    /// When the permit was granted (≈ when the request left).
    granted_at: Instant,
    /// Index of the window the weight was charged to (unix ms / window ms).
    window_index: u64,
}

impl Permit {
    /// Weight charged for this request.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The window the weight was charged to: unix time in ms divided by the window length.
    pub fn window_index(&self) -> u64 {
        self.window_index
    }

    /// When the permit was granted.
    pub fn granted_at(&self) -> Instant {
        self.granted_at
    }
}

/// What the governor needs to know about a response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseMeta {
    /// HTTP status.
    pub status: u16,
    /// `X-MBX-USED-WEIGHT-1M`, if the response carried it.
    pub used_weight_1m: Option<u32>,
    /// `Retry-After`, if present (seconds).
    pub retry_after: Option<Duration>,
    /// "IP banned until <ms>" parsed from a -1003 error body, if present.
    pub banned_until_ms: Option<u64>,
}

/// A snapshot of the governor for `/health`, metrics and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GovernorStatus {
    /// Weight counted in the current window: max(own count, server's figure).
    pub used_in_window: u32,
    /// Weight this process charged in the current window.
    pub own_used_in_window: u32,
    /// Highest `X-MBX-USED-WEIGHT-1M` seen in the current window.
    pub server_used_in_window: u32,
    /// The governor's ceiling per window.
    pub ceiling: u32,
    /// Binance's limit per window.
    pub limit: u32,
    /// Window length in ms.
    pub window_ms: u64,
    /// While paused after a 429/418: when calls resume (unix ms); else null.
    pub paused_until: Option<u64>,
    /// Pauses since start.
    pub pauses_total: u64,
    /// Callers waiting for weight right now.
    pub queued: usize,
    /// Permits granted since start.
    pub requests_total: u64,
    /// 429/418 answers since start.
    pub rate_limited_total: u64,
    /// Weight per window reserved for regular recurring work (open_interest).
    pub reserved_per_window: u32,
    /// Most a yielding burst (the volume sweep) may take per window.
    pub yielding_cap: u32,
    /// Weight yielding callers took in the current window.
    pub yielding_used_in_window: u32,
}

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
        self.wait_until_taken(started, |now| self.try_take(weight, now))
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
        self.wait_until_taken(started, |now| self.try_take_yielding(weight, now))
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

    /// Charges a yielding `weight` if it fits under both the ceiling and the
    /// yielding cap now, else says when to look again.
    fn try_take_yielding(&self, weight: u32, now: Instant) -> Result<Permit, Instant> {
        let mut st = self.lock();
        self.roll_window(&mut st, now);
        if let Some(until) = st.paused_until.filter(|u| *u > now) {
            return Err(until);
        }
        let cap = self.cap_for(st.reserved);
        let used = st.own_used.max(st.server_used);
        let ceiling = self.config.ceiling;
        let over_cap = st.yielding_used.saturating_add(weight.min(cap)) > cap;
        if over_cap || used.saturating_add(weight.min(ceiling)) > ceiling {
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
            return Err(self.next_boundary(now));
        }
        st.own_used = st.own_used.saturating_add(weight);
        st.yielding_used = st.yielding_used.saturating_add(weight);
        st.requests_total += 1;
        Ok(Permit {
            weight,
            granted_at: now,
            window_index: st.window_index,
        })
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

    /// Charges `weight` if it fits now, else says when to look again.
    fn try_take(&self, weight: u32, now: Instant) -> Result<Permit, Instant> {
        let mut st = self.lock();
        self.roll_window(&mut st, now);
        if let Some(until) = st.paused_until {
            if until > now {
                return Err(until);
            }
            st.paused_until = None;
            tracing::info!(target: "binance", "weight governor: pause over, REST calls resume");
        }
        let used = st.own_used.max(st.server_used);
        let ceiling = self.config.ceiling;
        if used.saturating_add(weight.min(ceiling)) > ceiling {
            return Err(self.next_boundary(now));
        }
        st.own_used = st.own_used.saturating_add(weight);
        st.requests_total += 1;
        Ok(Permit {
            weight,
            granted_at: now,
            window_index: st.window_index,
        })
    }

    /// Handles a 429/418: sets or extends the global pause.
    fn on_rate_limited(
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
