//! open_interest: polls open interest of the liquid set every 30 s, posts
//! samples and alerts on 5 min / 15 min / 1 hour moves (docs/jobs.md). The rules
//! are in [`rules`]; this module does the I/O around them.
//!
//! One tick:
//! 1. the liquid set (shared with liquid_universe, no backend round trip);
//! 2. one `openInterest` per symbol (weight 1 each) through the shared REST
//!    client; USD = contracts × mark price from the funding cache, with ONE
//!    `ticker/price` call (weight 2) for every symbol the cache has no fresh
//!    mark for, and only when there is such a symbol;
//! 3. alerts: decided by [`rules::evaluate`], enqueued in the outbox, and
//!    only then is the state (history + alert state) saved, once per tick, so
//!    a crash in between re-decides an alert the outbox then dedups instead
//!    of losing it (backend/mod.rs);
//! 4. samples in chunks of ≤ 100 with `"source":"realtime"` (sheddable).
//!
//! Weight: when one poll per interval would take more than this job's share
//! of the governor's ceiling, the effective interval is stretched: ticks are
//! skipped until it has passed, and the change is logged once.

mod memory;
pub mod rules;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use self::memory::STATE_FILE;
use self::memory::{load, SymbolMemory};
use self::rules::{Sample, Timeframe};
pub use self::settings::Settings;
use super::liquid_universe::set::LiquidSet;
use super::services::Services;
use super::{Job, Schedule};
use crate::backend::{OiAlert, OiSample, OiSamples, OiTimeframe, Outbox, Post};
use crate::binance::cache::FundingCache;
use crate::binance::governor::WeightGovernor;
use crate::binance::BinanceRest;
use crate::clock::{iso, unix_ms};
use crate::state::StateDir;

/// Weight of the all-symbol `ticker/price` fallback.
const PRICES_WEIGHT: u32 = 2;
/// A tick this close to the stretched due time polls: the scheduler hands
/// over the due time, not the wall clock, so exact multiples are the norm.
const DUE_SLACK: Duration = Duration::from_secs(1);

/// Symbols whose open interest is sampled but never alerted on, as the old
/// poller: USDCUSDT is a stablecoin pair whose open interest swings with
/// funding arbitrage, not with a market move.
pub const NEVER_ALERTS: [&str; 1] = ["USDCUSDT"];

/// What one tick did, for the summary line.
#[derive(Debug, Default)]
struct Tally {
    /// Symbols asked.
    polled: usize,
    /// `openInterest` calls that failed.
    failures: usize,
    /// Samples enqueued.
    samples: usize,
    /// Sample chunks the outbox refused (full or disk error).
    sample_chunks_failed: usize,
    /// Alerts enqueued (or already pending: duplicates).
    alerts: usize,
    /// Alerts the outbox refused; they are decided again next tick.
    alerts_failed: usize,
}

/// The job.
pub struct OpenInterest {
    /// Binance REST (openInterest, ticker/price), under the shared governor.
    rest: BinanceRest,
    /// The shared governor, for the weight plan.
    governor: Arc<WeightGovernor>,
    /// Mark prices and funding rates from the stream.
    cache: FundingCache,
    /// The liquid set liquid_universe maintains.
    liquid: LiquidSet,
    /// Where samples and alerts go.
    outbox: Outbox,
    /// Where [`STATE_FILE`] lives.
    state: StateDir,
    /// Rules and timing.
    settings: Settings,
    /// Per-symbol memory, loaded at start and saved every tick.
    symbols: BTreeMap<String, SymbolMemory>,
    /// When the last poll ran (the tick's due time).
    last_poll: Option<SystemTime>,
    /// The effective interval last logged, so a stretch is logged once per change.
    logged_interval: Duration,
    /// Whether the last poll needed the `ticker/price` fallback (its weight
    /// then counts in the plan).
    needed_prices: bool,
}

impl OpenInterest {
    /// Builds the job and loads [`STATE_FILE`] from `state` (a missing file
    /// starts empty; a corrupt or foreign one is logged and starts empty).
    pub fn new(
        rest: BinanceRest,
        cache: FundingCache,
        liquid: LiquidSet,
        outbox: Outbox,
        state: StateDir,
        settings: Settings,
    ) -> OpenInterest {
        let symbols = load(&state);
        OpenInterest {
            governor: rest.governor().clone(),
            rest,
            cache,
            liquid,
            outbox,
            state,
            logged_interval: settings.poll,
            settings,
            symbols,
            last_poll: None,
            needed_prices: false,
        }
    }

    /// [`OpenInterest::new`] from the shared services of `volspike run`.
    pub fn from_services(services: &Services, settings: Settings) -> OpenInterest {
        OpenInterest::new(
            services.rest.clone(),
            services.funding.cache.clone(),
            services.liquid.clone(),
            services.outbox.clone(),
            services.state.clone(),
            settings,
        )
    }

    /// The interval polls run at now: the configured one, or longer when
    /// `symbols` polls per interval would take more than this job's share
    /// of the weight ceiling. Logs each change once.
    pub fn effective_interval(&mut self, symbols: usize) -> Duration {
        let base = self.settings.poll;
        let per_poll = u32::try_from(symbols)
            .unwrap_or(u32::MAX)
            .saturating_add(if self.needed_prices { PRICES_WEIGHT } else { 0 });
        let needed = self
            .governor
            .min_interval_for(per_poll, self.settings.weight_share);
        // Whole seconds, rounded up (after rounding away float noise to the
        // millisecond: 40/60 of a minute is 40 s, not 41): the log speaks seconds.
        let needed_ms = (needed.as_secs_f64() * 1000.0).round() as u64;
        let needed = Duration::from_secs(needed_ms.div_ceil(1000));
        let interval = base.max(needed);
        // Keep this job's weight free of the volume sweep's burst: the sweep
        // yields whatever of a window the polls due in it need.
        let window = self.governor.config().window.as_secs_f64();
        let polls_per_window = (window / interval.as_secs_f64().max(1.0)).ceil();
        self.governor
            .reserve((f64::from(per_poll) * polls_per_window).min(f64::from(u32::MAX)) as u32);
        if interval != self.logged_interval {
            let per_minute = f64::from(per_poll) * 60.0 / base.as_secs_f64().max(1.0);
            let budget = self.governor.ceiling_per_minute() * self.settings.weight_share;
            if interval > base {
                tracing::warn!(
                    "open_interest: {symbols} symbols need {per_minute:.0} weight/min; stretching the poll to {} s (budget {budget:.0}/min)",
                    interval.as_secs()
                );
            } else {
                tracing::info!(
                    "open_interest: {symbols} symbols fit the weight budget again ({per_minute:.0} of {budget:.0}/min); polling every {} s",
                    base.as_secs()
                );
            }
            self.logged_interval = interval;
        }
        interval
    }

    /// The rules for a poll every `interval`: when stretched, a baseline may
    /// sit up to half an interval from `now − lookback` (samples are that
    /// far apart), so tolerances widen to keep the rules able to fire.
    fn timeframes_for(&self, interval: Duration) -> [Timeframe; 3] {
        let mut timeframes = self.settings.timeframes;
        let half = interval.as_millis() as u64 / 2;
        for tf in &mut timeframes {
            tf.tolerance_ms = tf.tolerance_ms.max(half);
        }
        timeframes
    }

    /// The mark price of `symbol` from the cache, if fresh.
    fn cached_mark(&self, symbol: &str, wall_now_ms: u64) -> Option<f64> {
        let data = self.cache.get(symbol)?;
        let updated = data.mark_updated_ms?;
        let fresh =
            wall_now_ms.saturating_sub(updated) <= self.settings.stale_after.as_millis() as u64;
        data.mark_price.filter(|p| fresh && *p > 0.0)
    }

    /// Prices for `missing` from one all-symbol `ticker/price` call; empty on
    /// failure (the samples then go without USD value).
    async fn rest_prices(&self, missing: &[&str]) -> HashMap<String, f64> {
        if missing.is_empty() {
            return HashMap::new();
        }
        match self.rest.prices().await {
            Ok(prices) => prices
                .into_iter()
                .filter(|p| p.price > 0.0)
                .map(|p| (p.symbol, p.price))
                .collect(),
            Err(e) => {
                tracing::warn!(
                    "no fresh mark price for {} symbols and ticker/price failed; their samples go without USD value: {e}",
                    missing.len()
                );
                HashMap::new()
            }
        }
    }

    /// Evaluates one symbol's new sample and enqueues its alerts. On any
    /// enqueue failure the symbol's alert state is put back, so the next
    /// tick decides the same alerts again (the outbox dedups those it has).
    async fn alert(
        &mut self,
        symbol: &str,
        sample: Sample,
        timeframes: &[Timeframe; 3],
        now: SystemTime,
        tally: &mut Tally,
    ) {
        let memory = self.symbols.entry(symbol.to_string()).or_default();
        memory.history.push(sample);
        if NEVER_ALERTS.contains(&symbol) {
            return;
        }
        let before = memory.alerts.clone();
        let alerts = rules::evaluate(&memory.history, &mut memory.alerts, sample, timeframes);
        if alerts.is_empty() {
            return;
        }
        let funding_rate = self.cache.funding_rate(symbol);
        let mut failed = false;
        for a in alerts {
            let Some(timeframe) = wire_timeframe(a.timeframe) else {
                tracing::error!(
                    timeframe = a.timeframe,
                    "unknown timeframe label; alert dropped"
                );
                continue;
            };
            let cooldown = timeframes
                .iter()
                .find(|t| t.label == a.timeframe)
                .map_or(Duration::ZERO, |t| Duration::from_millis(t.cooldown_ms));
            let payload = OiAlert {
                symbol: symbol.to_string(),
                direction: a.direction,
                baseline: a.baseline,
                current: a.current,
                pct_change: a.pct_change,
                abs_change: a.abs_change,
                timestamp: iso(now),
                source: OiAlert::SOURCE.to_string(),
                timeframe,
                price_change: a.price_change,
                funding_rate,
            };
            match self
                .outbox
                .enqueue(Post::oi_alert(&payload, cooldown))
                .await
            {
                Ok(_) => tally.alerts += 1,
                Err(e) => {
                    tracing::error!("OI alert not enqueued; decided again next tick: {e}");
                    tally.alerts_failed += 1;
                    failed = true;
                }
            }
        }
        if failed {
            if let Some(memory) = self.symbols.get_mut(symbol) {
                memory.alerts = before;
            }
        }
    }

    /// Forgets symbols no longer polled once nothing about them can matter:
    /// no sample usable as a baseline and every cooldown over.
    fn prune(&mut self, now_ms: u64) {
        let keep_ms = self
            .settings
            .timeframes
            .iter()
            .map(|t| (t.lookback_ms + t.tolerance_ms).max(t.cooldown_ms))
            .max()
            .unwrap_or(0);
        self.symbols.retain(|_, m| {
            let newest = m.history.samples.back().map_or(0, |s| s.ts_ms);
            let fired = m.alerts.last_fired_ms.values().copied().max().unwrap_or(0);
            newest.max(fired) + keep_ms >= now_ms
        });
    }

    /// Writes [`STATE_FILE`] (compact JSON, atomically, off the async threads).
    async fn save(&self) -> anyhow::Result<()> {
        let bytes = memory::encode(&self.symbols)?;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.write_atomic(STATE_FILE, &bytes)).await??;
        Ok(())
    }
}

/// The backend's timeframe for a [`rules`] label.
fn wire_timeframe(label: &str) -> Option<OiTimeframe> {
    [
        OiTimeframe::FiveMinutes,
        OiTimeframe::FifteenMinutes,
        OiTimeframe::OneHour,
    ]
    .into_iter()
    .find(|t| t.as_str() == label)
}

impl Job for OpenInterest {
    const NAME: &'static str = "open_interest";

    fn schedule(&self) -> Schedule {
        Schedule::Every(self.settings.poll)
    }

    async fn tick(&mut self, now: SystemTime) -> anyhow::Result<String> {
        let liquid = self.liquid.get();
        if liquid.is_empty() {
            return Ok("no liquid symbols yet".to_string());
        }
        let interval = self.effective_interval(liquid.len());
        if let Some(last) = self.last_poll {
            if now + DUE_SLACK < last + interval {
                return Ok(format!(
                    "waiting: poll stretched to {} s for {} symbols",
                    interval.as_secs(),
                    liquid.len()
                ));
            }
        }
        self.last_poll = Some(now);
        // The governor may hold the reads (a busy minute): samples carry the
        // time they were read, the due time plus however long that took.
        let started = Instant::now();

        let names: Vec<String> = liquid.keys().cloned().collect();
        let mut tally = Tally {
            polled: names.len(),
            ..Tally::default()
        };
        let results = self
            .rest
            .for_each_symbol(names, |rest, symbol| async move {
                rest.open_interest(&symbol).await
            })
            .await;
        let read_at = now + started.elapsed();
        let mut read = Vec::with_capacity(results.len());
        let mut first_error = None;
        for (symbol, result) in results {
            match result {
                Ok(oi) if oi.contracts.is_finite() && oi.contracts >= 0.0 => {
                    read.push((symbol, oi.contracts))
                }
                Ok(oi) => {
                    tally.failures += 1;
                    first_error.get_or_insert(format!(
                        "{symbol}: nonsensical open interest {}",
                        oi.contracts
                    ));
                }
                Err(e) => {
                    tally.failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(e) = &first_error {
            tracing::warn!(
                "{} of {} openInterest calls failed (first: {e})",
                tally.failures,
                tally.polled
            );
        }
        if read.is_empty() {
            anyhow::bail!(
                "every openInterest call failed ({} symbols); first: {}",
                tally.polled,
                first_error.unwrap_or_default()
            );
        }

        // Mark prices: the cache, else one all-symbol REST call for the rest.
        let wall_now_ms = unix_ms(SystemTime::now());
        let cached: Vec<Option<f64>> = read
            .iter()
            .map(|(symbol, _)| self.cached_mark(symbol, wall_now_ms))
            .collect();
        let missing: Vec<&str> = read
            .iter()
            .zip(&cached)
            .filter(|(_, mark)| mark.is_none())
            .map(|((symbol, _), _)| symbol.as_str())
            .collect();
        self.needed_prices = !missing.is_empty();
        let fallback = self.rest_prices(&missing).await;
        let marks: Vec<Option<f64>> = read
            .iter()
            .zip(cached)
            .map(|((symbol, _), mark)| mark.or_else(|| fallback.get(symbol).copied()))
            .collect();

        // Alerts first (they matter more than samples), then state, then samples.
        let timeframes = self.timeframes_for(interval);
        let now_ms = unix_ms(read_at);
        for ((symbol, contracts), mark_price) in read.iter().zip(&marks) {
            let sample = Sample {
                ts_ms: now_ms,
                contracts: *contracts,
                mark_price: *mark_price,
            };
            self.alert(symbol, sample, &timeframes, read_at, &mut tally)
                .await;
        }
        self.prune(now_ms);
        let saved = self.save().await;

        let samples: Vec<OiSample> = read
            .into_iter()
            .zip(marks)
            .map(|((symbol, contracts), mark_price)| OiSample {
                symbol,
                open_interest: contracts,
                open_interest_usd: mark_price.map(|m| m * contracts),
                mark_price,
            })
            .collect();
        // The dashboard's open-interest column reads the latest sample here.
        for s in &samples {
            if let Some(usd) = s.open_interest_usd {
                self.cache.set_open_interest(&s.symbol, usd, now_ms);
            }
        }
        for chunk in OiSamples::chunks(samples, &iso(read_at), OiSamples::REALTIME) {
            let n = chunk.data.len();
            match self.outbox.enqueue(Post::oi_samples(&chunk)).await {
                Ok(_) => tally.samples += n,
                Err(e) => {
                    tally.sample_chunks_failed += 1;
                    tracing::warn!("OI samples not enqueued: {e}");
                }
            }
        }

        if let Err(e) = saved {
            anyhow::bail!(
                "open_interest state not saved (cooldowns may not survive a restart): {e:#}"
            );
        }
        let mut summary = format!(
            "{} symbols polled, {} failed, {} samples posted, {} alerts",
            tally.polled, tally.failures, tally.samples, tally.alerts
        );
        if tally.alerts_failed > 0 {
            summary.push_str(&format!(
                ", {} alerts refused by the outbox",
                tally.alerts_failed
            ));
        }
        if tally.sample_chunks_failed > 0 {
            summary.push_str(&format!(
                ", {} sample chunks refused",
                tally.sample_chunks_failed
            ));
        }
        if interval > self.settings.poll {
            summary.push_str(&format!(" (poll stretched to {} s)", interval.as_secs()));
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::rules::TIMEFRAMES;
    use super::*;

    #[test]
    fn wire_timeframes_cover_every_label() {
        for tf in TIMEFRAMES {
            assert!(wire_timeframe(tf.label).is_some(), "{}", tf.label);
        }
        assert_eq!(wire_timeframe("2 min"), None);
    }
}
