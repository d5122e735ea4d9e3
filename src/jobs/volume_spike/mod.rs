//! volume_spike: hourly quote-volume spikes over the whole universe
//! (docs/jobs.md). The rules are in [`rules`]. In `stream` mode
//! (`VOLSPIKE_VOLUME_SOURCE`, the default) spikes are seen on the kline
//! streams the moment they hold ([`runner`], [`stream`]); the 5-minute tick
//! posts HALF/FULL updates and the hh:00 check from the stream's figures and
//! sweeps over REST only the symbols whose stream had a gap. In `sweep` mode
//! the tick sweeps every symbol, as before. Both share one post path and its
//! (symbol, hour) ledger ([`post`]).

pub mod live;
mod oi_change;
mod post;
pub mod rules;
pub mod runner;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use self::live::{JobContext, VolumeStream};
use self::oi_change::OiLookup;
use self::post::{Decision, Poster};
use self::rules::{AlertType, Candle, Rules};
use super::services::Services;
use super::{Job, Schedule};
use crate::binance::{BinanceRest, Kline, Universe};
use crate::clock::unix_ms;

/// A tick fails (shows in /health) when more than this share of symbols failed.
const MAX_FAILED_SHARE: f64 = 0.2;

/// The job: its clients, its thresholds, its post path and its stream side.
pub struct VolumeSpike {
    /// Binance REST: klines and open interest.
    rest: BinanceRest,
    /// The USDT-perpetual universe.
    universe: Arc<Universe>,
    /// Thresholds.
    rules: Rules,
    /// Payload, OI lookup, outbox, Telegram and the ledger, shared with the stream.
    poster: Poster,
    /// The kline streams' view (inactive in `sweep` mode).
    stream: VolumeStream,
}

impl VolumeSpike {
    /// Builds the job from the shared clients and loads its ledger; in
    /// `stream` mode hands the post path to the streams, which
    /// [`runner::start`] then starts.
    pub fn new(services: &Services, rules: Rules) -> VolumeSpike {
        let poster = Poster::new(
            services.funding.cache.clone(),
            services.outbox.clone(),
            OiLookup {
                client: services.primary.clone(),
                rest: services.rest.clone(),
                omissions: services.oi_change_omissions.clone(),
            },
            services.notifier.clone(),
            services.state.clone(),
        );
        let stream = services.volume_stream.clone();
        stream.attach(JobContext {
            poster: poster.clone(),
            universe: services.universe.clone(),
            rest: services.rest.clone(),
        });
        VolumeSpike {
            rest: services.rest.clone(),
            universe: services.universe.clone(),
            rules,
            poster,
            stream,
        }
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
        let limit = u32::from(rules::klines_limit(minute));
        let universe = self
            .universe
            .symbols()
            .await
            .context("reading the universe")?;
        let assets: BTreeMap<String, String> = universe
            .iter()
            .map(|s| (s.symbol.clone(), s.base_asset.clone()))
            .collect();
        let symbols: Vec<String> = assets.keys().cloned().collect();
        // The stream answers for the symbols it showed within the silence
        // limit; the others (all of them in sweep mode) are swept.
        let (mut slots, to_sweep) = self.stream.split_slot(&symbols, now_ms, minute).await;
        // The sweep yields to the open-interest polls: what does not fit in
        // this weight window beside them waits for the next one (about a
        // minute for the last ~100 of 600 symbols) instead of holding a poll.
        let swept = to_sweep.len();
        let results = self
            .rest
            .yielding()
            .for_each_symbol(to_sweep, move |rest, symbol| async move {
                rest.klines(&symbol, "1h", limit).await
            })
            .await;

        let mut failed = Vec::new();
        for (symbol, result) in results {
            let klines = match result {
                Ok(klines) => klines,
                Err(e) => {
                    failed.push(format!("{symbol}: {e}"));
                    continue;
                }
            };
            let candles: Vec<Candle> = klines.iter().map(candle).collect();
            self.stream.seed(&symbol, &candles, now_ms);
            if let Some((current, previous)) = rules::select(&candles, now_ms, minute) {
                slots.push((symbol, current, previous));
            }
        }
        let from_stream = symbols.len() - swept;

        let mut decided = Vec::new();
        for (symbol, current, previous) in slots {
            let hour = current.open_time_ms;
            let first = self.poster.first_alert(&symbol, hour);
            let Some(alert) = rules::decide(&current, &previous, minute, first, &self.rules) else {
                continue;
            };
            // The stream may have claimed the hour since `first` was read.
            if alert == AlertType::Spike
                && !self
                    .poster
                    .reserve(&symbol, hour, rules::first_alert_minute(minute))
            {
                continue;
            }
            let asset = assets
                .get(&symbol)
                .cloned()
                .unwrap_or_else(|| rules::asset_of(&symbol).to_string());
            decided.push(Decision {
                symbol,
                asset,
                alert,
                current,
                previous,
                event_time_ms: None,
            });
        }
        let posted = self.poster.post(decided, now).await?;

        let oi_note = match (posted.oi_timed_out, posted.oi_stale) {
            (0, 0) => String::new(),
            (late, stale) => format!(
                ", oiChange omitted for {late} (lookups past the {} s budget) and {stale} (stale snapshot)",
                oi_change::LOOKUP_BUDGET.as_secs()
            ),
        };
        let source = if self.stream.enabled() {
            format!(
                "{from_stream} symbols from the stream, {swept} swept over REST ({})",
                self.stream.describe()
            )
        } else {
            format!("swept {swept} symbols")
        };
        let summary = format!(
            "{source} at :{minute:02} (klines limit {limit}): {} spikes, {} updates, {} failed{}{oi_note}",
            posted.spikes,
            posted.updates,
            failed.len(),
            if posted.duplicates > 0 {
                format!(", {} already sent", posted.duplicates)
            } else {
                String::new()
            }
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
