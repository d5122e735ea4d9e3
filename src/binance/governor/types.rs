//! What the governor is set up with and hands out: its settings, the permit
//! a caller holds while its request is out, what a response tells it, and
//! the snapshot `/health`, `/metrics` and the dashboard read.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Binance's request-weight limit per minute per IP.
pub const BINANCE_WEIGHT_LIMIT: u32 = 2400;

/// Settings of a [`WeightGovernor`](super::WeightGovernor).
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

/// Proof that weight was charged; hand it back to
/// [`WeightGovernor::observe`](super::WeightGovernor::observe) with the
/// response so the governor knows when the request was sent.
#[derive(Debug, Clone)]
pub struct Permit {
    /// Weight charged.
    pub(super) weight: u32,
    /// When the permit was granted (≈ when the request left).
    pub(super) granted_at: Instant,
    /// Index of the window the weight was charged to (unix ms / window ms).
    pub(super) window_index: u64,
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
    /// "IP banned until `<ms>`" parsed from a -1003 error body, if present.
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
