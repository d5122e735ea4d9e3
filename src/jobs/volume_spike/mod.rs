//! volume_spike: hourly quote-volume spikes over the whole universe, on the
//! 5-minute wall clock (docs/jobs.md). The rules are in [`detect`]; this file does
//! the I/O: one klines sweep per tick under the shared weight budget, the
//! hour-start open interest for `oiChange`, the post through the outbox, and
//! the persisted (symbol, hour) → first-alert-minute ledger.

pub mod detect;
mod oi_change;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use self::detect::{AlertType, Candle, Rules};
use self::oi_change::OiLookup;
use super::services::Services;
use super::{Job, Schedule};
use crate::backend::{Enqueued, Outbox, Post, VolumeAlert};
use crate::binance::cache::FundingCache;
use crate::binance::{BinanceRest, Kline, Universe};
use crate::clock::{from_unix_ms, iso, unix_ms};
use crate::state::StateDir;
use crate::telegram::notifier::TelegramNotifier;

/// The file holding the ledger in the state directory.
const LEDGER_FILE: &str = "volume_spike.json";
/// Ledger entries older than this many hours are forgotten.
const LEDGER_HOURS: u64 = 3;
/// A tick fails (shows in /health) when more than this share of symbols failed.
const MAX_FAILED_SHARE: f64 = 0.2;
const HOUR_MS: u64 = 3_600_000;

/// Which (symbol, hour) already fired, and at which minute.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ledger {
    /// `"SYMBOL|<hour open ms>"` → minute of the first alert (60 = found at hh:00).
    alerted: BTreeMap<String, u32>,
}

fn ledger_key(symbol: &str, hour_ms: u64) -> String {
    format!("{symbol}|{hour_ms}")
}

/// The job: its clients, its thresholds and its ledger.
pub struct VolumeSpike {
    /// Binance REST: klines and open interest.
    rest: BinanceRest,
    /// The USDT-perpetual universe.
    universe: Arc<Universe>,
    /// Funding rates from the stream.
    funding: FundingCache,
    /// Where alerts go.
    outbox: Outbox,
    /// The hour-start OI snapshot (primary backend) and the current OI.
    oi: OiLookup,
    /// Thresholds.
    rules: Rules,
    /// State directory for the ledger.
    state: StateDir,
    /// (symbol, hour) → first alert minute.
    ledger: Ledger,
    /// The same message to a Telegram chat, when configured; never blocks.
    notifier: TelegramNotifier,
}

impl VolumeSpike {
    /// Builds the job from the shared clients and loads its ledger (a
    /// corrupt ledger is logged and replaced: re-firing one hour is better
    /// than not running).
    pub fn new(services: &Services, rules: Rules) -> VolumeSpike {
        let state = services.state.clone();
        let ledger = match state.load_json::<Ledger>(LEDGER_FILE) {
            Ok(ledger) => ledger.unwrap_or_default(),
            Err(e) => {
                tracing::error!(JOB = Self::NAME, "starting with an empty alert ledger: {e}");
                Ledger::default()
            }
        };
        VolumeSpike {
            rest: services.rest.clone(),
            universe: services.universe.clone(),
            funding: services.funding.cache.clone(),
            outbox: services.outbox.clone(),
            oi: OiLookup {
                client: services.primary.clone(),
                rest: services.rest.clone(),
                omissions: services.oi_change_omissions.clone(),
            },
            rules,
            state,
            ledger,
            notifier: services.notifier.clone(),
        }
    }

    /// The backend payload for one decision.
    fn payload(
        &self,
        symbol: &str,
        asset: &str,
        alert: AlertType,
        current: &Candle,
        previous: &Candle,
        now: SystemTime,
    ) -> VolumeAlert {
        let ratio = detect::ratio(current.quote_volume, previous.quote_volume);
        VolumeAlert {
            symbol: symbol.to_string(),
            asset: asset.to_string(),
            current_volume: current.quote_volume,
            previous_volume: previous.quote_volume,
            // Full precision as the old script sent (the backend stores what
            // it gets); the message keeps two decimals.
            volume_ratio: ratio,
            price: Some(current.close),
            funding_rate: Some(self.funding.funding_rate(symbol).unwrap_or(0.0)),
            candle_direction: Some(detect::direction(current)),
            message: detect::message(alert, asset, current.quote_volume, ratio),
            timestamp: iso(now),
            detection_time: Some(iso(now)),
            hour_timestamp: iso(from_unix_ms(current.open_time_ms)),
            is_update: Some(alert != AlertType::Spike),
            alert_type: Some(alert),
            price_change: detect::price_change(current),
            oi_change: None,
        }
    }

    fn save_ledger(&mut self, now_ms: u64) -> anyhow::Result<()> {
        let oldest = now_ms.saturating_sub(LEDGER_HOURS * HOUR_MS);
        self.ledger.alerted.retain(|key, _| {
            key.rsplit('|')
                .next()
                .and_then(|h| h.parse::<u64>().ok())
                .is_some_and(|hour| hour >= oldest)
        });
        self.state
            .save_json(LEDGER_FILE, &self.ledger)
            .context("saving the volume-spike ledger")
    }
}

fn candle(k: &Kline) -> Candle {
    Candle {
        open_time_ms: u64::try_from(k.open_time_ms).unwrap_or(0),
        close_time_ms: u64::try_from(k.close_time_ms).unwrap_or(0),
        open: k.open,
        close: k.close,
        quote_volume: k.quote_volume,
    }
}

impl Job for VolumeSpike {
    const NAME: &'static str = "volume_spike";

    fn schedule(&self) -> Schedule {
        Schedule::WallClock(Duration::from_secs(300))
    }

    async fn tick(&mut self, now: SystemTime) -> anyhow::Result<String> {
        let now_ms = unix_ms(now);
        let minute = ((now_ms / 60_000) % 60) as u32;
        let limit = u32::from(detect::klines_limit(minute));
        let universe = self
            .universe
            .symbols()
            .await
            .context("reading the universe")?;
        let assets: BTreeMap<String, String> = universe
            .iter()
            .map(|s| (s.symbol.clone(), s.base_asset.clone()))
            .collect();
        // The sweep yields to the open-interest polls: what does not fit in
        // this weight window beside them waits for the next one (about a
        // minute for the last ~100 of 600 symbols) instead of holding a poll.
        let results = self
            .rest
            .yielding()
            .for_each_symbol(
                assets.keys().cloned().collect::<Vec<_>>(),
                move |rest, symbol| async move { rest.klines(&symbol, "1h", limit).await },
            )
            .await;

        let mut failed = Vec::new();
        let mut decided = Vec::new();
        for (symbol, result) in results {
            let klines = match result {
                Ok(klines) => klines,
                Err(e) => {
                    failed.push(format!("{symbol}: {e}"));
                    continue;
                }
            };
            let candles: Vec<Candle> = klines.iter().map(candle).collect();
            let Some((current, previous)) = detect::select(&candles, now_ms, minute) else {
                continue;
            };
            let key = ledger_key(&symbol, current.open_time_ms);
            let first = self.ledger.alerted.get(&key).copied();
            if let Some(alert) = detect::decide(&current, &previous, minute, first, &self.rules) {
                decided.push((symbol, alert, current, previous, key));
            }
        }

        // Every alert's OI lookup at once, within one budget: a slow
        // backend makes alerts go without oiChange, never late.
        let lookups = self
            .oi
            .changes(
                decided
                    .iter()
                    .map(|(symbol, _, current, _, _)| (symbol.clone(), current.open_time_ms))
                    .collect(),
                oi_change::LOOKUP_BUDGET,
            )
            .await;
        let (mut spikes, mut updates, mut duplicates) = (0, 0, 0);
        for (symbol, alert, current, previous, key) in decided {
            let asset = assets
                .get(&symbol)
                .cloned()
                .unwrap_or_else(|| detect::asset_of(&symbol).to_string());
            let mut payload = self.payload(&symbol, &asset, alert, &current, &previous, now);
            payload.oi_change = lookups
                .changes
                .get(&(symbol.clone(), current.open_time_ms))
                .copied();
            tracing::info!(symbol = %symbol, alert_type = alert.as_str(), ratio = payload.volume_ratio, "{}", payload.message);
            // Enqueue first, then record: after a crash in between, the
            // re-decided post is a duplicate the outbox refuses by its key.
            match self.outbox.enqueue(Post::volume_alert(&payload)).await? {
                // Only a newly queued alert goes to Telegram: a duplicate was
                // announced when it was first queued.
                Enqueued::Queued => self.notifier.send_alert(&payload.message).await,
                Enqueued::Duplicate => duplicates += 1,
            }
            if alert == AlertType::Spike {
                spikes += 1;
                self.ledger
                    .alerted
                    .insert(key, detect::first_alert_minute(minute));
            } else {
                updates += 1;
            }
        }
        if spikes > 0 || duplicates > 0 {
            self.save_ledger(now_ms)?;
        }

        let swept = assets.len();
        let oi_note = match (lookups.timed_out, lookups.stale) {
            (0, 0) => String::new(),
            (late, stale) => format!(
                ", oiChange omitted for {late} (lookups past the {} s budget) and {stale} (stale snapshot)",
                oi_change::LOOKUP_BUDGET.as_secs()
            ),
        };
        let summary = format!(
            "swept {swept} symbols at :{minute:02} (klines limit {limit}): {spikes} spikes, {updates} updates, {} failed{}{oi_note}",
            failed.len(),
            if duplicates > 0 { format!(", {duplicates} already sent") } else { String::new() }
        );
        if swept > 0 && failed.len() as f64 > swept as f64 * MAX_FAILED_SHARE {
            anyhow::bail!(
                "{summary}; first errors: {}",
                failed
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        if !failed.is_empty() {
            tracing::warn!(
                "{} symbols failed this sweep; first: {}",
                failed.len(),
                failed[0]
            );
        }
        Ok(summary)
    }
}
