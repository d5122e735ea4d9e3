//! The running kline streams of `stream` mode: the connections
//! ([`kline_link`]) spread over the universe and following it, one thread
//! feeding every update to the [`StreamDetector`](super::stream::StreamDetector)
//! and posting a crossing the moment it holds (through the job's post path,
//! so the ledger is shared with the tick), and a task reading over REST the
//! previous hours the stream has not shown (at start, after a gap, new
//! listings), paced by the weight governor.
//!
//! The links and the detect thread are critical loops: they beat the
//! watchdog like the funding stream does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::live::{lock, JobContext, VolumeStream};
use super::post::Decision;
use super::rules;
use super::stream::{hour_of, stream_alert_minute};
use crate::binance::kline_link::{self, LinkEvent, LinkSink};
use crate::binance::klines;
use crate::binance::stream::StreamSettings;
use crate::clock::unix_ms;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Liveness;

/// The name of the stream loops in `/health` and the log.
pub const LOOP_NAME: &str = "volume_stream";
/// A link or the detect thread without a beat for this long is stuck.
const LOOP_DEADLINE: Duration = Duration::from_secs(60);
/// How often the universe is compared with the subscriptions and missing
/// previous hours are looked for.
const PLAN_EVERY: Duration = Duration::from_secs(5);
/// The closed candles reach the stream right after the hour: missing
/// previous hours are read over REST only after this much of the hour.
const CLOSE_GRACE_MS: u64 = 15_000;
/// How long the detect thread waits for an update before beating anyway.
const RECV_TICK: Duration = Duration::from_millis(500);

/// One link's events, tagged with its connection index.
struct Tagged {
    index: usize,
    tx: Sender<(usize, LinkEvent)>,
}

impl LinkSink for Tagged {
    fn send(&mut self, event: LinkEvent) -> bool {
        self.tx.send((self.index, event)).is_ok()
    }
}

/// Starts the streams when the volume job runs in `stream` mode (nothing
/// otherwise); the threads end at shutdown. Must be called inside the
/// tokio runtime.
pub fn start(
    stream: &VolumeStream,
    liveness: &Liveness,
    shutdown: Shutdown,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let Some(job) = stream.inner.job.get().cloned() else {
        return Ok(Vec::new());
    };
    let (tx, rx) = mpsc::channel();
    let runtime = tokio::runtime::Handle::current();
    let detect = {
        let stream = stream.clone();
        let job = job.clone();
        let heartbeat = liveness.register(LOOP_NAME, LOOP_DEADLINE);
        let shutdown = shutdown.clone();
        let runtime = runtime.clone();
        std::thread::Builder::new()
            .name("kline-detect".into())
            .spawn(move || {
                let mut up = Vec::new();
                while !shutdown.is_triggered() {
                    heartbeat.beat_blocking();
                    match rx.recv_timeout(RECV_TICK) {
                        Ok((index, event)) => {
                            on_link_event(&stream, &job, &runtime, &mut up, index, event)
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?
    };
    let planner = Planner {
        stream: stream.clone(),
        job,
        liveness: liveness.clone(),
        tx,
        shutdown,
        threads: Arc::new(Mutex::new(Vec::new())),
        tried: BTreeMap::new(),
    };
    let threads = planner.threads.clone();
    runtime.spawn(planner.run());
    tracing::info!(
        JOB = "volume_spike",
        "volume alerts from the kline streams (at most {} streams per connection, {} messages/s sent per connection)",
        klines::MAX_STREAMS_PER_CONNECTION,
        klines::SEND_PER_SECOND
    );
    // The link threads are started by the planner as the universe needs
    // them; a joiner thread hands them to `run`'s shutdown join.
    let joiner = std::thread::Builder::new()
        .name("kline-join".into())
        .spawn(move || {
            let _ = detect.join();
            let links: Vec<JoinHandle<()>> = lock(&threads).drain(..).collect();
            for link in links {
                let _ = link.join();
            }
        })?;
    Ok(vec![joiner])
}

/// Applies one link event: connection state, or one update to the detector
/// and, when it crosses, the post.
fn on_link_event(
    stream: &VolumeStream,
    job: &JobContext,
    runtime: &tokio::runtime::Handle,
    up: &mut Vec<bool>,
    index: usize,
    event: LinkEvent,
) {
    if up.len() <= index {
        up.resize(index + 1, false);
    }
    let inner = &stream.inner;
    match event {
        LinkEvent::Up => {
            if !up[index] {
                up[index] = true;
                inner.links_up.fetch_add(1, Ordering::Relaxed);
            }
        }
        LinkEvent::Down(_) => {
            if up[index] {
                up[index] = false;
                inner.links_up.fetch_sub(1, Ordering::Relaxed);
            }
            // Its symbols are in a gap from now: slots sweep them over REST
            // until they update again.
            let set = lock(&inner.links).get(index).map(|s| lock(s).clone());
            if let Some(set) = set {
                lock(&inner.detector).mark_silent(&set);
            }
        }
        LinkEvent::Kline(event) => {
            inner.updates.fetch_add(1, Ordering::Relaxed);
            let now = crate::clock::now();
            let now_ms = unix_ms(now);
            let crossing = lock(&inner.detector).on_event(&event, now_ms, |s, h| {
                job.poster.first_alert(s, h).is_some()
            });
            let Some(crossing) = crossing else {
                return;
            };
            // A closed candle's crossing is the hh:00 finding of the hour
            // that just closed; inside the hour, the sweep's slot.
            let minute = if crossing.current.open_time_ms < hour_of(now_ms) {
                rules::first_alert_minute(0)
            } else {
                stream_alert_minute(now_ms)
            };
            if !job
                .poster
                .reserve(&crossing.symbol, crossing.current.open_time_ms, minute)
            {
                return;
            }
            let asset = lock(&inner.listed)
                .iter()
                .find(|s| s.symbol == crossing.symbol)
                .map(|s| s.base_asset.clone())
                .unwrap_or_else(|| rules::asset_of(&crossing.symbol).to_string());
            let decision = Decision {
                symbol: crossing.symbol,
                asset,
                alert: rules::AlertType::Spike,
                current: crossing.current,
                previous: crossing.previous,
                event_time_ms: Some(crossing.event_time_ms),
            };
            let poster = job.poster.clone();
            runtime.spawn(async move {
                if let Err(e) = poster.post(vec![decision], now).await {
                    tracing::error!(JOB = "volume_spike", "posting a stream spike: {e:#}");
                }
            });
        }
    }
}

/// Follows the universe with the links' symbol sets and reads missing
/// previous hours over REST.
struct Planner {
    stream: VolumeStream,
    job: JobContext,
    liveness: Liveness,
    tx: Sender<(usize, LinkEvent)>,
    shutdown: Shutdown,
    /// The link threads started so far.
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Symbol → the hour whose previous hour REST already answered (a new
    /// listing without one is asked once an hour, not every round).
    tried: BTreeMap<String, u64>,
}

impl Planner {
    async fn run(mut self) {
        let mut shutdown = self.shutdown.clone();
        let mut first = true;
        loop {
            if let Err(e) = self.round(first).await {
                tracing::warn!(JOB = "volume_spike", "kline streams: {e:#}");
            } else {
                first = false;
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(PLAN_EVERY) => {}
            }
        }
    }

    async fn round(&mut self, first: bool) -> anyhow::Result<()> {
        let universe = self.job.universe.symbols().await?;
        let desired: BTreeSet<String> = universe.iter().map(|s| s.symbol.clone()).collect();
        *lock(&self.stream.inner.listed) = universe;
        self.follow(&desired)?;
        lock(&self.stream.inner.detector).retain(|s| desired.contains(s));
        self.seed(&desired, first).await;
        Ok(())
    }

    /// Moves the links' symbol sets to `desired`, opening a connection when
    /// every one is full.
    fn follow(&mut self, desired: &BTreeSet<String>) -> std::io::Result<()> {
        let inner = &self.stream.inner;
        let mut links = lock(&inner.links);
        let assigned: Vec<BTreeSet<String>> = links.iter().map(|l| lock(l).clone()).collect();
        for (index, plan) in klines::plan(&assigned, desired).into_iter().enumerate() {
            if plan.subscribe.is_empty() && plan.unsubscribe.is_empty() {
                continue;
            }
            if let Some(set) = links.get(index) {
                let mut set = lock(set);
                for s in &plan.unsubscribe {
                    set.remove(s);
                }
                set.extend(plan.subscribe);
                continue;
            }
            let set = Arc::new(Mutex::new(plan.subscribe.into_iter().collect()));
            let settings =
                StreamSettings::new(&inner.ws_url, inner.silence).with_proxy(inner.proxy.clone());
            let thread = kline_link::spawn(
                settings,
                set.clone(),
                inner.link_counters.clone(),
                Tagged {
                    index,
                    tx: self.tx.clone(),
                },
                Some(self.liveness.register(LOOP_NAME, LOOP_DEADLINE)),
                self.shutdown.clone(),
            )?;
            links.push(set);
            lock(&self.threads).push(thread);
            tracing::info!(
                JOB = "volume_spike",
                connection = index,
                "kline connection opened"
            );
        }
        Ok(())
    }

    /// Reads over REST the previous hour of the symbols the stream has not
    /// shown it for. After the first round, not in the first seconds of an
    /// hour: the closed candles are on their way on the stream then.
    async fn seed(&mut self, desired: &BTreeSet<String>, first: bool) {
        let now_ms = unix_ms(crate::clock::now());
        let hour = hour_of(now_ms);
        if !first && now_ms - hour < CLOSE_GRACE_MS {
            return;
        }
        let missing: Vec<String> = lock(&self.stream.inner.detector)
            .missing_previous(desired, now_ms)
            .into_iter()
            .filter(|s| self.tried.get(s) != Some(&hour))
            .collect();
        if missing.is_empty() {
            return;
        }
        let results = self
            .job
            .rest
            .yielding()
            .for_each_symbol(missing, |rest, symbol| async move {
                rest.klines(&symbol, klines::INTERVAL, 2).await
            })
            .await;
        let mut failed = 0;
        for (symbol, result) in results {
            match result {
                Ok(rows) => {
                    let candles: Vec<rules::Candle> = rows.iter().map(super::candle).collect();
                    self.stream.seed(&symbol, &candles, now_ms);
                    self.stream.inner.seeded.fetch_add(1, Ordering::Relaxed);
                    self.tried.insert(symbol, hour);
                }
                Err(_) => failed += 1,
            }
        }
        self.tried.retain(|s, _| desired.contains(s));
        if failed > 0 {
            tracing::warn!(
                JOB = "volume_spike",
                "{failed} previous hours could not be read over REST; retried in {} s",
                PLAN_EVERY.as_secs()
            );
        }
    }
}
