//! What the volume job and its kline streams share in `stream` mode
//! (`VOLSPIKE_VOLUME_SOURCE`, docs/jobs.md "From the kline streams"): the
//! [`StreamDetector`] the streams feed, the links' symbol sets, and the
//! post path once the job is built. The tick asks it which symbols the
//! stream answers for at a slot; the others are swept over REST.
//!
//! Built once per process (in [`crate::jobs::services::Services`]); in
//! `sweep` mode it stays empty and the job sweeps every symbol, as before.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::post::Poster;
use super::rules::{Candle, Rules};
use super::stream::StreamDetector;
use crate::binance::kline_link::{LinkCounters, LinkTotals};
use crate::binance::klines;
use crate::binance::proxy::BinanceProxy;
use crate::binance::{BinanceRest, SymbolInfo, Universe};
use crate::config::Config;

/// At hh:00 the closed candles reach the stream a moment after the hour:
/// the tick waits at most this long for them before sweeping the rest.
const HOUR_TURN_WAIT: Duration = Duration::from_secs(5);
/// How often the tick re-checks during that wait.
const HOUR_TURN_POLL: Duration = Duration::from_millis(250);

/// Locks `mutex`, ignoring poisoning (every critical section is a plain
/// update of the data behind it).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The job's clients the stream needs, handed over when the job is built.
#[derive(Clone)]
pub(super) struct JobContext {
    /// The shared post path (ledger, payload, outbox).
    pub poster: Poster,
    /// The universe the streams follow.
    pub universe: Arc<Universe>,
    /// Binance REST for the previous hours the stream has not shown.
    pub rest: BinanceRest,
}

/// The volume job's stream side; cheap to clone.
#[derive(Clone)]
pub struct VolumeStream {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// `stream` mode (`VOLSPIKE_VOLUME_SOURCE=stream`).
    pub enabled: bool,
    /// The `/market` WebSocket base URL.
    pub ws_url: String,
    /// The proxy Binance is reached through, if any.
    pub proxy: Option<BinanceProxy>,
    /// A symbol without an update for this long is in a gap.
    pub silence: Duration,
    /// Every symbol's tape.
    pub detector: Mutex<StreamDetector>,
    /// Each connection's symbol set (index = connection).
    pub links: Mutex<Vec<Arc<Mutex<BTreeSet<String>>>>>,
    /// The universe as of the planner's last round (the universe's own
    /// shared list, not a copy): base assets for messages.
    pub listed: Mutex<Arc<Vec<SymbolInfo>>>,
    /// Set when the job is built in `stream` mode: the streams start only then.
    pub job: OnceLock<JobContext>,
    /// Connections up now.
    pub links_up: AtomicUsize,
    /// Kline updates received since start.
    pub updates: AtomicU64,
    /// Closed hours read over REST since start (start, gaps, new listings).
    pub seeded: AtomicU64,
    /// What every connection sent and its reconnects.
    pub link_counters: LinkCounters,
}

/// The kline streams as `/metrics` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KlineView {
    /// Connections started (each carries at most
    /// [`klines::MAX_STREAMS_PER_CONNECTION`] streams).
    pub connections: usize,
    /// Connections up now.
    pub connections_up: usize,
    /// Streams subscribed over all connections.
    pub streams: usize,
    /// Subscribed symbols without an update for the silence limit (or none
    /// yet): the next slot sweeps them over REST.
    pub gap_symbols: usize,
    /// Kline updates received since start.
    pub updates: u64,
    /// Previous hours read over REST since start.
    pub previous_hours_read: u64,
    /// Control messages and reconnects of every connection.
    pub links: LinkTotals,
}

impl std::fmt::Debug for VolumeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeStream")
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

impl VolumeStream {
    /// The stream side for `config` (inactive in `sweep` mode).
    pub fn from_config(config: &Config) -> VolumeStream {
        let rules = Rules {
            min_ratio: config.thresholds.spike_ratio,
            min_quote_volume: config.thresholds.spike_min_volume,
        };
        VolumeStream {
            inner: Arc::new(Inner {
                enabled: config.thresholds.volume_from_stream,
                ws_url: config.binance.ws_url.clone(),
                proxy: config.binance.proxy.clone(),
                silence: config.funding.silence,
                detector: Mutex::new(StreamDetector::new(rules)),
                links: Mutex::new(Vec::new()),
                listed: Mutex::new(Arc::new(Vec::new())),
                job: OnceLock::new(),
                links_up: AtomicUsize::new(0),
                updates: AtomicU64::new(0),
                seeded: AtomicU64::new(0),
                link_counters: LinkCounters::default(),
            }),
        }
    }

    /// Whether alerts come from the streams (else the sweep does it all).
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Hands the job's clients over; the streams start with them.
    pub(super) fn attach(&self, job: JobContext) {
        if self.inner.enabled {
            let _ = self.inner.job.set(job);
        }
    }

    /// Splits `symbols` for the slot at `now_ms`, `minute` past the hour:
    /// (symbol, current, previous) the stream answers, and the symbols to
    /// sweep over REST. At hh:00 waits up to [`HOUR_TURN_WAIT`] for the
    /// closed candles to arrive on the stream.
    pub(super) async fn split_slot(
        &self,
        symbols: &[String],
        now_ms: u64,
        minute: u32,
    ) -> (Vec<(String, Candle, Candle)>, Vec<String>) {
        if !self.inner.enabled {
            return (Vec::new(), symbols.to_vec());
        }
        let streaming = self.inner.links_up.load(Ordering::Relaxed) > 0;
        let wait = if minute == 0 && streaming {
            HOUR_TURN_WAIT
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + wait;
        loop {
            let (answered, gaps) = self.split_now(symbols, now_ms, minute);
            if gaps.is_empty() || Instant::now() >= deadline {
                return (answered, gaps);
            }
            tokio::time::sleep(HOUR_TURN_POLL).await;
        }
    }

    fn split_now(
        &self,
        symbols: &[String],
        now_ms: u64,
        minute: u32,
    ) -> (Vec<(String, Candle, Candle)>, Vec<String>) {
        let silence_ms = self.inner.silence.as_millis() as u64;
        let detector = lock(&self.inner.detector);
        let mut answered = Vec::new();
        let mut gaps = Vec::new();
        for symbol in symbols {
            match detector.slot_candles(symbol, now_ms, minute, silence_ms) {
                Some((current, previous)) => answered.push((symbol.clone(), current, previous)),
                None => gaps.push(symbol.clone()),
            }
        }
        (answered, gaps)
    }

    /// Keeps the closed hours of a REST read (before `now_ms`) as previous hours.
    pub(super) fn seed(&self, symbol: &str, candles: &[Candle], now_ms: u64) {
        if !self.inner.enabled {
            return;
        }
        let mut detector = lock(&self.inner.detector);
        for c in candles.iter().filter(|c| c.close_time_ms < now_ms) {
            detector.seed_closed(symbol, *c);
        }
    }

    /// The streams as of `now_ms`; `None` in `sweep` mode (no stream).
    pub fn view(&self, now_ms: u64) -> Option<KlineView> {
        if !self.inner.enabled {
            return None;
        }
        let sets: Vec<BTreeSet<String>> = lock(&self.inner.links)
            .iter()
            .map(|l| lock(l).clone())
            .collect();
        let silence_ms = self.inner.silence.as_millis() as u64;
        let gap_symbols =
            lock(&self.inner.detector).silent_count(sets.iter().flatten(), now_ms, silence_ms);
        Some(KlineView {
            connections: sets.len(),
            connections_up: self.inner.links_up.load(Ordering::Relaxed),
            streams: sets.iter().map(BTreeSet::len).sum(),
            gap_symbols,
            updates: self.inner.updates.load(Ordering::Relaxed),
            previous_hours_read: self.inner.seeded.load(Ordering::Relaxed),
            links: self.inner.link_counters.totals(),
        })
    }

    /// A short line for the tick's summary: connections, updates, REST reads.
    pub(super) fn describe(&self) -> String {
        let links = lock(&self.inner.links);
        let streams: usize = links.iter().map(|l| lock(l).len()).sum();
        let sent = self.inner.link_counters.totals();
        format!(
            "{streams} kline streams on {} of {} connections up (at most {} streams and {} messages/s each), {} updates, {} previous hours read over REST, {} reconnects, {} control messages held by the pacing",
            self.inner.links_up.load(Ordering::Relaxed),
            links.len(),
            klines::MAX_STREAMS_PER_CONNECTION,
            klines::SEND_PER_SECOND,
            self.inner.updates.load(Ordering::Relaxed),
            self.inner.seeded.load(Ordering::Relaxed),
            sent.reconnects,
            sent.paced_messages,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, Sources};

    fn from_env(env: &[(&str, &str)]) -> Result<VolumeStream, Vec<String>> {
        let sources = Sources {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Sources::default()
        };
        Config::from_sources(&sources, Mode { local: true })
            .map(|(config, _)| VolumeStream::from_config(&config))
            .map_err(|report| report.problems)
    }

    #[test]
    fn the_source_is_the_stream_unless_sweep_is_asked_and_nothing_else_is_taken() {
        assert!(from_env(&[]).is_ok_and(|s| s.enabled()));
        let source = "VOLSPIKE_VOLUME_SOURCE";
        assert!(from_env(&[(source, "stream")]).is_ok_and(|s| s.enabled()));
        assert!(from_env(&[(source, "sweep")]).is_ok_and(|s| !s.enabled()));
        let problems = from_env(&[(source, "websocket")]).err().unwrap_or_default();
        assert_eq!(
            problems,
            vec!["VOLSPIKE_VOLUME_SOURCE: `websocket` is not `stream` or `sweep`".to_string()]
        );
    }

    #[tokio::test]
    async fn in_sweep_mode_every_symbol_is_swept_and_nothing_is_kept() {
        let Ok(stream) = from_env(&[("VOLSPIKE_VOLUME_SOURCE", "sweep")]) else {
            panic!("valid configuration");
        };
        let symbols = vec!["AUSDT".to_string(), "BUSDT".to_string()];
        let c = Candle {
            open_time_ms: 0,
            close_time_ms: 1,
            open: 1.0,
            close: 1.0,
            quote_volume: 1.0,
        };
        stream.seed("AUSDT", &[c], 10);
        let (answered, swept) = stream.split_slot(&symbols, 10, 0).await;
        assert!(answered.is_empty());
        assert_eq!(swept, symbols);
        assert!(lock(&stream.inner.detector)
            .missing_previous(&symbols, 10)
            .contains(&"AUSDT".to_string()));
    }
}
