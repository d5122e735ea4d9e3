//! funding_health: every minute, is the funding data fit to serve? (docs/jobs.md)
//!
//! Checks the cache the stream fills: enough symbols, none older than the
//! stale limit, a message within the last minute; every 5 minutes BTCUSDT's
//! mark price and funding rate against REST `premiumIndex`. A failed check
//! fails the tick, so it shows in `/health` (503) and the log; restarting
//! anything is the watchdog's job, not this check's.
//!
//! Before judging, symbols Binance no longer lists (a delisting, an expired
//! quarterly) are evicted once silent past the stale limit, and any symbol
//! silent for [`EVICT_SILENT_AFTER`]; staleness is judged on listed symbols
//! only, so a delisting cannot hold `/health` at 503 until a restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::services::Services;
use super::{Job, Schedule};
use crate::binance::cache::FundingCache;
use crate::binance::{BinanceRest, Universe};
use crate::clock::unix_ms;
use crate::jobs::funding_stream::StreamStatus;

/// The symbol compared with REST.
const REFERENCE: &str = "BTCUSDT";
/// Mark prices may differ by this fraction (0.1%).
const MARK_TOLERANCE: f64 = 0.001;
/// Funding rates may differ by this much.
const FUNDING_TOLERANCE: f64 = 1e-7;
/// A message must have arrived within this.
const MESSAGE_WITHIN: Duration = Duration::from_secs(60);
/// A symbol silent this long leaves the cache even when Binance still lists
/// it (or the listing is unknown): it is not coming back on this connection.
pub const EVICT_SILENT_AFTER: Duration = Duration::from_secs(3600);

/// What the checks need to know, read at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Symbols with a funding rate in the cache.
    pub symbols: usize,
    /// Age of the oldest entry.
    pub oldest_age: Option<Duration>,
    /// Time since the last stream message.
    pub since_last_message: Option<Duration>,
}

/// Thresholds of the checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Minimum symbol count (500 for the real market).
    pub min_symbols: usize,
    /// Entries older than this are stale.
    pub stale_after: Duration,
}

/// Every problem with `obs`; empty when healthy.
pub fn assess(obs: &Observation, limits: &Limits) -> Vec<String> {
    let mut problems = Vec::new();
    if obs.symbols < limits.min_symbols {
        problems.push(format!(
            "{} symbols with funding (expected ≥ {})",
            obs.symbols, limits.min_symbols
        ));
    }
    match obs.oldest_age {
        Some(age) if age > limits.stale_after => problems.push(format!(
            "oldest entry is {} s old (stale after {} s)",
            age.as_secs(),
            limits.stale_after.as_secs()
        )),
        _ => {}
    }
    match obs.since_last_message {
        None => problems.push("no stream message yet".to_string()),
        Some(age) if age > MESSAGE_WITHIN => {
            problems.push(format!("last stream message {} s ago", age.as_secs()))
        }
        Some(_) => {}
    }
    problems
}

/// Differences between the cache and REST for the reference symbol.
pub fn compare(
    cached_mark: f64,
    cached_rate: Option<f64>,
    rest_mark: f64,
    rest_rate: Option<f64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if rest_mark > 0.0 && ((cached_mark - rest_mark) / rest_mark).abs() > MARK_TOLERANCE {
        problems.push(format!(
            "{REFERENCE} mark {cached_mark} vs REST {rest_mark} (> 0.1% apart)"
        ));
    }
    if let (Some(a), Some(b)) = (cached_rate, rest_rate) {
        if (a - b).abs() > FUNDING_TOLERANCE {
            problems.push(format!("{REFERENCE} funding {a} vs REST {b}"));
        }
    }
    problems
}

/// The job.
pub struct FundingHealth {
    /// The cache under check.
    cache: FundingCache,
    /// The stream's counters.
    stream: StreamStatus,
    /// Binance's listing: which symbols are judged, and which are evicted.
    universe: Arc<Universe>,
    /// REST for the cross-check.
    rest: BinanceRest,
    /// Thresholds.
    limits: Limits,
    /// When the last REST cross-check ran.
    last_cross_check: Option<SystemTime>,
    /// The stretch without a listing: warned once, then summarized, as
    /// the scheduler does for the failed ticks it retries.
    no_listing: crate::outage::OutageLog,
}

impl FundingHealth {
    /// Builds the job from the shared clients.
    pub fn new(services: &Services, min_symbols: usize) -> FundingHealth {
        FundingHealth {
            cache: services.funding.cache.clone(),
            stream: services.funding.stream.clone(),
            universe: services.universe.clone(),
            rest: services.rest.clone(),
            limits: Limits {
                min_symbols,
                stale_after: services.funding.stale_after,
            },
            last_cross_check: None,
            no_listing: crate::outage::OutageLog::default(),
        }
    }

    async fn cross_check(&self) -> Vec<String> {
        let Some(entry) = self.cache.get(REFERENCE) else {
            return vec![format!("{REFERENCE} is not in the cache")];
        };
        let Some(mark) = entry.mark_price else {
            return vec![format!("{REFERENCE} has no mark price in the cache")];
        };
        match self.rest.premium_index(REFERENCE).await {
            Ok(rest) => compare(
                mark,
                entry.funding_rate,
                rest.mark_price,
                rest.last_funding_rate,
            ),
            Err(e) => vec![format!("REST cross-check failed: {e}")],
        }
    }
}

impl Job for FundingHealth {
    const NAME: &'static str = "funding_health";

    fn schedule(&self) -> Schedule {
        Schedule::WallClock(Duration::from_secs(60))
    }

    async fn tick(&mut self, now: SystemTime) -> anyhow::Result<String> {
        // Ages against the real clock: the cache stamps entries with it.
        let real_now = SystemTime::now();
        // The listing as of the last good exchangeInfo (refreshed hourly at
        // most, and by liquid_universe every 5 minutes); without one, only
        // silence evicts and every symbol is judged.
        use crate::outage::Say;
        match self.universe.symbols().await {
            Err(e) => match self
                .no_listing
                .failed_because(std::time::Instant::now(), &e.to_string())
            {
                Say::First | Say::Summary { .. } => {
                    tracing::warn!("no Binance listing yet; judging every cached symbol: {e}")
                }
                Say::Quiet => {
                    tracing::debug!("no Binance listing yet; judging every cached symbol: {e}")
                }
            },
            Ok(_) => {
                if let Some((failures, lasting)) =
                    self.no_listing.recovered(std::time::Instant::now())
                {
                    tracing::info!(
                        "Binance listing read again after {failures} failed reads over {}",
                        crate::outage::lasting_text(lasting)
                    );
                }
            }
        }
        let listed = self.universe.listed();
        let evicted = self.cache.evict(
            listed.as_deref(),
            self.limits.stale_after,
            EVICT_SILENT_AFTER,
            real_now,
        );
        if !evicted.is_empty() {
            tracing::info!(
                "funding cache: evicted {} symbols no longer listed (silent > {} s) or silent > {} s: {}",
                evicted.len(),
                self.limits.stale_after.as_secs(),
                EVICT_SILENT_AFTER.as_secs(),
                evicted.join(", ")
            );
        }
        let obs = Observation {
            symbols: self.cache.funding_len(),
            oldest_age: self.cache.oldest_listed_age(listed.as_deref(), real_now),
            since_last_message: self
                .stream
                .last_message_ms()
                .map(|ms| Duration::from_millis(unix_ms(real_now).saturating_sub(ms))),
        };
        let mut problems = assess(&obs, &self.limits);
        let cross_check_due = self.last_cross_check.is_none_or(|last| {
            now.duration_since(last).unwrap_or_default() >= Duration::from_secs(300)
        });
        let mut checked_rest = false;
        if cross_check_due && obs.symbols > 0 {
            problems.extend(self.cross_check().await);
            self.last_cross_check = Some(now);
            checked_rest = true;
        }
        let summary = summary_line(
            obs.symbols,
            obs.oldest_age,
            obs.since_last_message,
            evicted.len(),
            checked_rest,
        );
        if problems.is_empty() {
            Ok(summary)
        } else {
            anyhow::bail!("{}; {summary}", problems.join("; "))
        }
    }
}

/// The tick's one-line summary. Ages that do not exist yet (no data, no
/// message) are left out rather than printed as `0 s` or `-1 s`.
fn summary_line(
    symbols: usize,
    oldest_age: Option<Duration>,
    since_last_message: Option<Duration>,
    evicted: usize,
    checked_rest: bool,
) -> String {
    let mut parts = vec![format!("{symbols} symbols")];
    if let Some(age) = oldest_age {
        parts.push(format!("oldest {} s", age.as_secs()));
    }
    parts.push(match since_last_message {
        Some(age) => format!("last message {} s ago", age.as_secs()),
        None => "no message yet".to_string(),
    });
    if evicted > 0 {
        parts.push(format!("{evicted} delisted or silent symbols evicted"));
    }
    if checked_rest {
        parts.push("BTCUSDT matches REST".to_string());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_never_invents_an_age() {
        assert_eq!(
            summary_line(0, None, None, 0, false),
            "0 symbols, no message yet"
        );
        assert_eq!(
            summary_line(
                612,
                Some(Duration::from_secs(3)),
                Some(Duration::from_secs(1)),
                2,
                true
            ),
            "612 symbols, oldest 3 s, last message 1 s ago, 2 delisted or silent symbols evicted, BTCUSDT matches REST"
        );
    }

    const LIMITS: Limits = Limits {
        min_symbols: 500,
        stale_after: Duration::from_secs(180),
    };

    #[test]
    fn a_full_fresh_cache_is_healthy() {
        let obs = Observation {
            symbols: 612,
            oldest_age: Some(Duration::from_secs(4)),
            since_last_message: Some(Duration::from_secs(1)),
        };
        assert!(assess(&obs, &LIMITS).is_empty());
    }

    #[test]
    fn each_check_reports_its_problem() {
        let obs = Observation {
            symbols: 12,
            oldest_age: Some(Duration::from_secs(200)),
            since_last_message: Some(Duration::from_secs(90)),
        };
        let problems = assess(&obs, &LIMITS);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("12 symbols"));
        assert!(problems[1].contains("200 s old"));
        assert!(problems[2].contains("90 s ago"));
        let never = Observation {
            since_last_message: None,
            ..obs
        };
        assert!(assess(&never, &LIMITS)
            .iter()
            .any(|p| p.contains("no stream message")));
    }

    #[test]
    fn rest_comparison_tolerances() {
        assert!(
            compare(65000.0, Some(0.0001), 65050.0, Some(0.0001)).is_empty(),
            "0.077% apart is fine"
        );
        assert_eq!(
            compare(65000.0, Some(0.0001), 65100.0, Some(0.0001)).len(),
            1,
            "0.15% is not"
        );
        assert_eq!(
            compare(65000.0, Some(0.0001), 65000.0, Some(0.00012)).len(),
            1
        );
        assert!(
            compare(65000.0, None, 65000.0, Some(0.0001)).is_empty(),
            "no cached rate, nothing to compare"
        );
    }
}
