//! The one post path of volume alerts, shared by the 5-minute tick and the
//! kline stream: the (symbol, hour) ledger both consult, the payload, the
//! hour-start OI lookup for `oiChange`, the outbox and the Telegram copy.
//!
//! The ledger is shared in memory, so whichever side sees a spike first
//! reserves its (symbol, hour) and the other one stays quiet; the outbox's
//! dedup key refuses what a crash between enqueue and ledger save re-decides.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::oi_change::{self, OiLookup};
use super::rules::{self, AlertType, Candle};
use crate::backend::{Enqueued, Outbox, Post, VolumeAlert};
use crate::binance::cache::FundingCache;
use crate::clock::{from_unix_ms, iso, unix_ms};
use crate::state::StateDir;
use crate::telegram::notifier::TelegramNotifier;

/// The file holding the ledger in the state directory.
const LEDGER_FILE: &str = "volume_spike.json";
/// Ledger entries older than this many hours are forgotten.
const LEDGER_HOURS: u64 = 3;
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

/// One alert to post.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Symbol.
    pub symbol: String,
    /// Base asset, for the message.
    pub asset: String,
    /// SPIKE, HALF_UPDATE or FULL_UPDATE.
    pub alert: AlertType,
    /// The hour the alert is about, as seen now.
    pub current: Candle,
    /// The closed hour before it.
    pub previous: Candle,
    /// Binance's event time of the kline update that crossed (stream only):
    /// where detection latency starts.
    pub event_time_ms: Option<u64>,
}

/// What one batch of posts did.
#[derive(Debug, Default)]
pub(crate) struct Posted {
    /// New spikes queued.
    pub spikes: usize,
    /// HALF/FULL updates queued.
    pub updates: usize,
    /// Refused by the outbox as already queued.
    pub duplicates: usize,
    /// OI lookups past the budget.
    pub oi_timed_out: usize,
    /// OI snapshots too old.
    pub oi_stale: usize,
}

/// The shared post path; cheap to clone.
#[derive(Clone)]
pub(crate) struct Poster {
    /// Funding rates from the stream.
    pub funding: FundingCache,
    /// Where alerts go.
    pub outbox: Outbox,
    /// The hour-start OI snapshot (primary backend) and the current OI.
    pub oi: OiLookup,
    /// The same message to a Telegram chat, when configured; never blocks.
    pub notifier: TelegramNotifier,
    /// State directory for the ledger.
    pub state: StateDir,
    /// (symbol, hour) → first alert minute, shared by the tick and the stream.
    ledger: Arc<Mutex<Ledger>>,
}

impl Poster {
    /// The post path with the ledger loaded from `state` (a corrupt ledger
    /// is logged and replaced: re-firing one hour is better than not running).
    pub fn new(
        funding: FundingCache,
        outbox: Outbox,
        oi: OiLookup,
        notifier: TelegramNotifier,
        state: StateDir,
    ) -> Poster {
        let ledger = match state.load_json::<Ledger>(LEDGER_FILE) {
            Ok(ledger) => ledger.unwrap_or_default(),
            Err(e) => {
                tracing::error!(
                    JOB = "volume_spike",
                    "starting with an empty alert ledger: {e}"
                );
                Ledger::default()
            }
        };
        Poster {
            funding,
            outbox,
            oi,
            notifier,
            state,
            ledger: Arc::new(Mutex::new(ledger)),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        match self.ledger.lock() {
            Ok(ledger) => ledger,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The minute of the first alert of (symbol, hour), if it fired.
    pub fn first_alert(&self, symbol: &str, hour_ms: u64) -> Option<u32> {
        self.ledger()
            .alerted
            .get(&ledger_key(symbol, hour_ms))
            .copied()
    }

    /// Claims (symbol, hour) for a spike recorded at `minute`; false when
    /// the other side (stream or sweep) already has it.
    pub fn reserve(&self, symbol: &str, hour_ms: u64, minute: u32) -> bool {
        let mut ledger = self.ledger();
        let key = ledger_key(symbol, hour_ms);
        if ledger.alerted.contains_key(&key) {
            return false;
        }
        ledger.alerted.insert(key, minute);
        true
    }

    fn release(&self, symbol: &str, hour_ms: u64) {
        self.ledger().alerted.remove(&ledger_key(symbol, hour_ms));
    }

    /// The backend payload for one decision.
    fn payload(&self, d: &Decision, now: SystemTime) -> VolumeAlert {
        let (current, previous) = (&d.current, &d.previous);
        let ratio = rules::ratio(current.quote_volume, previous.quote_volume);
        VolumeAlert {
            symbol: d.symbol.clone(),
            asset: d.asset.clone(),
            current_volume: current.quote_volume,
            previous_volume: previous.quote_volume,
            // Full precision as the old script sent (the backend stores what
            // it gets); the message keeps two decimals.
            volume_ratio: ratio,
            price: Some(current.close),
            funding_rate: Some(self.funding.funding_rate(&d.symbol).unwrap_or(0.0)),
            candle_direction: Some(rules::direction(current)),
            message: rules::message(d.alert, &d.asset, current.quote_volume, ratio),
            timestamp: iso(now),
            detection_time: Some(iso(now)),
            hour_timestamp: iso(from_unix_ms(current.open_time_ms)),
            is_update: Some(d.alert != AlertType::Spike),
            alert_type: Some(d.alert),
            price_change: rules::price_change(current),
            oi_change: None,
        }
    }

    /// Posts `decided` (spikes already reserved in the ledger): every OI
    /// lookup at once within one budget (a slow backend makes alerts go
    /// without oiChange, never late), then enqueue, Telegram and the ledger
    /// saved. A spike that cannot be queued is released, so a later slot
    /// tries again.
    pub async fn post(&self, decided: Vec<Decision>, now: SystemTime) -> anyhow::Result<Posted> {
        let lookups = self
            .oi
            .changes(
                decided
                    .iter()
                    .map(|d| (d.symbol.clone(), d.current.open_time_ms))
                    .collect(),
                oi_change::LOOKUP_BUDGET,
            )
            .await;
        let mut posted = Posted {
            oi_timed_out: lookups.timed_out,
            oi_stale: lookups.stale,
            ..Posted::default()
        };
        let mut failure = None;
        for d in &decided {
            if failure.is_some() {
                if d.alert == AlertType::Spike {
                    self.release(&d.symbol, d.current.open_time_ms);
                }
                continue;
            }
            let mut payload = self.payload(d, now);
            payload.oi_change = lookups
                .changes
                .get(&(d.symbol.clone(), d.current.open_time_ms))
                .copied();
            tracing::info!(JOB = "volume_spike", symbol = %d.symbol, alert_type = d.alert.as_str(), ratio = payload.volume_ratio, "{}", payload.message);
            match self.outbox.enqueue(Post::volume_alert(&payload)).await {
                // Only a newly queued alert goes to Telegram: a duplicate was
                // announced when it was first queued.
                Ok(Enqueued::Queued) => {
                    if let Some(event_ms) = d.event_time_ms {
                        crate::alert_latency::record_queued(unix_ms(now).saturating_sub(event_ms));
                    }
                    self.notifier.send_alert(&payload.message).await
                }
                Ok(Enqueued::Duplicate) => posted.duplicates += 1,
                Err(e) => {
                    if d.alert == AlertType::Spike {
                        self.release(&d.symbol, d.current.open_time_ms);
                    }
                    failure = Some(e);
                    continue;
                }
            }
            match d.alert {
                AlertType::Spike => posted.spikes += 1,
                _ => posted.updates += 1,
            }
        }
        if posted.spikes > 0 || posted.duplicates > 0 {
            self.save_ledger(unix_ms(now))?;
        }
        match failure {
            Some(e) => Err(e).context("queueing a volume alert"),
            None => Ok(posted),
        }
    }

    fn save_ledger(&self, now_ms: u64) -> anyhow::Result<()> {
        let oldest = now_ms.saturating_sub(LEDGER_HOURS * HOUR_MS);
        let snapshot = {
            let mut ledger = self.ledger();
            ledger.alerted.retain(|key, _| {
                key.rsplit('|')
                    .next()
                    .and_then(|h| h.parse::<u64>().ok())
                    .is_some_and(|hour| hour >= oldest)
            });
            ledger.clone()
        };
        self.state
            .save_json(LEDGER_FILE, &snapshot)
            .context("saving the volume-spike ledger")
    }
}
