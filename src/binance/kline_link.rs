//! One kline connection: `{base}/stream` on the `/market` route, carrying the
//! `<symbol>@kline_1h` streams of a shared symbol set, read on its own thread
//! (tungstenite is blocking) and handed over as [`LinkEvent`]s.
//!
//! It follows the funding stream's rules and reuses its connect, backoff and
//! close: a link without a kline for the silence limit is dead, a failed or
//! closed link is reconnected with jittered exponential backoff, and the
//! connection is replaced before Binance's 24 h cut-off. The symbol set may
//! change at any time: the difference goes out as SUBSCRIBE/UNSUBSCRIBE
//! batches no faster than [`klines::SEND_PER_SECOND`].

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tungstenite::Message;

use super::klines::{self, KlineEvent, NotKline, SendPacer};
use super::stream::{self, StreamSettings};
use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// How long one read may block, so subscriptions and shutdown are seen fast.
const READ_TICK: Duration = Duration::from_millis(100);
/// How often the symbol set is compared with what is subscribed: not on
/// every frame (2400 a second for 600 symbols), a copy of the set each time.
const SYNC_EVERY: Duration = Duration::from_millis(500);

/// What the link reports to its reader.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Connected: the streams are being (re)subscribed.
    Up,
    /// One kline update.
    Kline(KlineEvent),
    /// The link is down (failed, closed, silent or replaced): a gap starts.
    Down(String),
}

/// What the links did since start, summed over every connection given the
/// same counters: for `/metrics`. Cheap to clone (clones count together).
#[derive(Debug, Clone, Default)]
pub struct LinkCounters {
    /// The atomics every clone shares.
    inner: Arc<LinkCounts>,
}

/// The atomics behind [`LinkCounters`].
#[derive(Debug, Default)]
struct LinkCounts {
    /// SUBSCRIBE messages sent.
    subscribe_messages: AtomicU64,
    /// UNSUBSCRIBE messages sent.
    unsubscribe_messages: AtomicU64,
    /// Messages that had to wait for the per-connection send pacing.
    paced_messages: AtomicU64,
    /// Connection attempts after a link's first.
    reconnects: AtomicU64,
}

/// A reading of [`LinkCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkTotals {
    /// SUBSCRIBE messages sent.
    pub subscribe_messages: u64,
    /// UNSUBSCRIBE messages sent.
    pub unsubscribe_messages: u64,
    /// Messages that waited for the pacing (at most
    /// [`klines::SEND_PER_SECOND`] a second per connection).
    pub paced_messages: u64,
    /// Connection attempts after a link's first.
    pub reconnects: u64,
}

impl LinkCounters {
    /// The totals since start.
    pub fn totals(&self) -> LinkTotals {
        let c = &self.inner;
        LinkTotals {
            subscribe_messages: c.subscribe_messages.load(Ordering::Relaxed),
            unsubscribe_messages: c.unsubscribe_messages.load(Ordering::Relaxed),
            paced_messages: c.paced_messages.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// Where a link hands its events: `false` when the reader is gone (the
/// link then stops).
pub trait LinkSink: Send + 'static {
    /// Hands over one event.
    fn send(&mut self, event: LinkEvent) -> bool;
}

impl LinkSink for std::sync::mpsc::Sender<LinkEvent> {
    fn send(&mut self, event: LinkEvent) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
}

/// Starts the link's thread. It ends at shutdown or when the sink's reader
/// is gone. `heartbeat`, when given, beats at least every
/// [`READ_TICK`] while connected or backing off: the watchdog sees a stuck
/// thread. What it sends and its reconnects are added to `counters`.
pub fn spawn(
    settings: StreamSettings,
    symbols: Arc<Mutex<BTreeSet<String>>>,
    counters: LinkCounters,
    mut sink: impl LinkSink,
    heartbeat: Option<Heartbeat>,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kline-link".into())
        .spawn(move || {
            let beat = || {
                if let Some(h) = &heartbeat {
                    h.beat_blocking();
                }
            };
            let link = Link {
                settings: &settings,
                symbols: &symbols,
                counts: &counters.inner,
            };
            run(&link, &mut sink, &beat, &shutdown)
        })
}

/// What one link's loops read and count into.
struct Link<'a> {
    settings: &'a StreamSettings,
    symbols: &'a Mutex<BTreeSet<String>>,
    counts: &'a LinkCounts,
}

fn run(link: &Link<'_>, sink: &mut impl LinkSink, beat: &dyn Fn(), shutdown: &Shutdown) {
    let settings = link.settings;
    let url = format!("{}/stream", settings.base_url);
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let mut first = true;
    while !shutdown.is_triggered() {
        if !std::mem::take(&mut first) {
            link.counts.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let why = match stream::connect(&url, settings.proxy.as_ref()) {
            Ok(ws) => {
                if !sink.send(LinkEvent::Up) {
                    return;
                }
                let started = Instant::now();
                let why = session(ws, link, sink, beat, shutdown);
                if started.elapsed() >= Duration::from_secs(60) {
                    backoff.reset();
                }
                why
            }
            Err(e) => Some(e),
        };
        let Some(why) = why else {
            return; // shutdown or no reader
        };
        tracing::warn!(JOB = "volume_spike", "kline stream down: {why}");
        if !sink.send(LinkEvent::Down(why)) {
            return;
        }
        let until = Instant::now() + backoff.next_delay();
        while Instant::now() < until && !shutdown.is_triggered() {
            beat();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads one connection; `Some(why)` when it must be replaced, `None` to stop.
fn session(
    mut ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    link: &Link<'_>,
    sink: &mut impl LinkSink,
    beat: &dyn Fn(),
    shutdown: &Shutdown,
) -> Option<String> {
    let (settings, symbols, counts) = (link.settings, link.symbols, link.counts);
    if let Err(e) = stream::set_read_timeout(&mut ws, READ_TICK) {
        return Some(format!("socket options: {e}"));
    }
    let opened = Instant::now();
    let mut carried: BTreeSet<String> = BTreeSet::new();
    let mut outgoing: VecDeque<String> = VecDeque::new();
    // Whether the message at the head of `outgoing` was held by the pacer
    // (counted once, however long it waits).
    let mut head_paced = false;
    let mut pacer = SendPacer::new(klines::SEND_PER_SECOND);
    let mut next_id = 1;
    let mut last_data = Instant::now();
    let mut last_sync: Option<Instant> = None;
    loop {
        beat();
        if shutdown.is_triggered() {
            stream::close(&mut ws);
            return None;
        }
        if opened.elapsed() >= settings.max_connection_age {
            stream::close(&mut ws);
            return Some("replaced before the 24 h cut-off".into());
        }
        // Subscriptions follow the symbol set; this connection carries at
        // most the first 1024 (the universe is ~600).
        if last_sync.is_none_or(|t: Instant| t.elapsed() >= SYNC_EVERY) {
            last_sync = Some(Instant::now());
            let desired = match symbols.lock() {
                Ok(set) => set.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if desired != carried {
                let plans = klines::plan(std::slice::from_ref(&carried), &desired);
                if let Some(plan) = plans.first() {
                    let messages = klines::control_messages(plan, next_id);
                    next_id += messages.len() as u64;
                    outgoing.extend(messages);
                    carried.retain(|s| !plan.unsubscribe.contains(s));
                    carried.extend(plan.subscribe.iter().cloned());
                }
                if plans.len() > 1 {
                    tracing::warn!(
                        JOB = "volume_spike",
                        "{} symbols past the {} streams of one connection are not streamed",
                        desired.len() - carried.len(),
                        klines::MAX_STREAMS_PER_CONNECTION
                    );
                }
            }
        }
        while !outgoing.is_empty() {
            if !pacer.wait_before_next(Instant::now()).is_zero() {
                if !std::mem::replace(&mut head_paced, true) {
                    counts.paced_messages.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            let Some(text) = outgoing.pop_front() else {
                break;
            };
            head_paced = false;
            let sent = if text.contains(r#""method":"UNSUBSCRIBE""#) {
                &counts.unsubscribe_messages
            } else {
                &counts.subscribe_messages
            };
            sent.fetch_add(1, Ordering::Relaxed);
            pacer.record(Instant::now());
            if let Err(e) = ws.send(Message::text(text)) {
                return Some(format!("subscribing: {e}"));
            }
        }
        if !carried.is_empty() && last_data.elapsed() >= settings.silence {
            stream::close(&mut ws);
            return Some(format!("no kline for {} s", settings.silence.as_secs()));
        }
        match ws.read() {
            Ok(Message::Text(text)) => match klines::parse_event(text.as_str()) {
                Ok(event) => {
                    last_data = Instant::now();
                    if !sink.send(LinkEvent::Kline(event)) {
                        stream::close(&mut ws);
                        return None;
                    }
                }
                Err(NotKline::Control) => {}
                Err(NotKline::Garbage(e)) => {
                    tracing::debug!(JOB = "volume_spike", "skipped a kline frame: {e}")
                }
            },
            Ok(Message::Close(_)) => return Some("closed by the server".into()),
            Ok(_) => {}
            Err(e) if stream::is_timeout(&e) => {}
            Err(e) => return Some(format!("read failed: {e}")),
        }
        // Pongs queued by the read go out now.
        match ws.flush() {
            Ok(()) => {}
            Err(e) if stream::is_timeout(&e) => {}
            Err(e) => return Some(format!("write failed: {e}")),
        }
    }
}
