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

pub mod rules;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use self::rules::{
    assess, compare, summary_line, Limits, Observation, CROSS_CHECK_EVERY, EVICT_SILENT_AFTER,
    REFERENCE,
};
use super::services::Services;
use super::{Job, Schedule};
use crate::binance::cache::FundingCache;
use crate::binance::{BinanceRest, Universe};
use crate::clock::unix_ms;
use crate::jobs::funding_stream::StreamStatus;

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
        let cross_check_due = self
            .last_cross_check
            .is_none_or(|last| now.duration_since(last).unwrap_or_default() >= CROSS_CHECK_EVERY);
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
