//! The fake Binance combined-stream WebSocket (`/market/stream?streams=...`).
//!
//! Each connection runs on its own thread with a short read timeout, so the
//! controls (stall, drop, garbage, pings, interval) take effect within a few
//! tens of milliseconds.

use std::io::{self, ErrorKind, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Bytes, Message, WebSocket};

use super::json;
use super::market::{Candle, MarketHandle};
use crate::http_util::{parse_query, query_value};
use crate::sync::{lock, now_ms};
use crate::tcp_server::{ConnGuard, Connections};

/// How long a connection thread waits for client data before looking at the
/// controls again.
const POLL: Duration = Duration::from_millis(20);
/// Time allowed for the opening handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not read for this long loses frames (write timeout).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default push interval of the array streams.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// How often Binance pushes each subscribed kline stream.
pub(crate) const KLINE_INTERVAL: Duration = Duration::from_millis(250);
/// Binance's limit on messages a client sends per second and connection.
const CLIENT_MESSAGES_PER_SECOND: usize = 10;

/// Something to send once on every live connection.
#[derive(Debug, Clone)]
enum Broadcast {
    Ping(Vec<u8>),
    Garbage,
    /// A closed-candle event (`k.x` true) for one symbol.
    ClosedKline(String, Candle),
}

/// What a connection serves, decided at the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// `/market/stream`: push the requested array streams.
    Live(Vec<String>),
    /// Legacy `/stream` after the cut-over: connected, silent.
    Silent,
}

/// State and behaviour controls shared by all WebSocket connections.
pub(crate) struct WsState {
    market: MarketHandle,
    interval: Mutex<Duration>,
    stalled: AtomicBool,
    legacy_silent: AtomicBool,
    /// Connections after a successful handshake.
    total: AtomicUsize,
    /// Append-only log; each connection remembers how far it got.
    broadcasts: Mutex<Vec<Broadcast>>,
    pongs: Mutex<Vec<Vec<u8>>>,
    /// Every SUBSCRIBE/UNSUBSCRIBE received, in order (method, streams).
    subscriptions: Mutex<Vec<(String, Vec<String>)>>,
    /// The most client messages any connection sent within one second.
    peak_client_rate: AtomicUsize,
    /// Added to the wall clock for event times and the open hour, so the
    /// streams agree with an appliance run with `VOLSPIKE_CLOCK_OFFSET_MS`.
    clock_offset_ms: AtomicI64,
    /// Injected volumes by symbol: when, and the event time of the first
    /// push that carried it (where a detection latency starts).
    spikes: Mutex<std::collections::BTreeMap<String, SpikeMark>>,
}

/// One injected open-hour volume.
#[derive(Debug, Clone, Copy)]
struct SpikeMark {
    /// When it was set, unix ms (the streams' clock).
    injected_ms: i64,
    /// `E` of the first kline frame carrying it.
    first_event_ms: Option<i64>,
    /// The volume set.
    quote_volume: f64,
}

impl WsState {
    pub(crate) fn new(market: MarketHandle) -> WsState {
        WsState {
            market,
            interval: Mutex::new(DEFAULT_INTERVAL),
            stalled: AtomicBool::new(false),
            legacy_silent: AtomicBool::new(true),
            total: AtomicUsize::new(0),
            broadcasts: Mutex::new(Vec::new()),
            pongs: Mutex::new(Vec::new()),
            subscriptions: Mutex::new(Vec::new()),
            peak_client_rate: AtomicUsize::new(0),
            clock_offset_ms: AtomicI64::new(0),
            spikes: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Sets `symbol`'s open-hour quote volume now; returns the instant.
    pub(crate) fn set_open_hour_volume(&self, symbol: &str, quote_volume: f64) -> i64 {
        let now = self.now();
        let hour = Candle::hour_start(now);
        self.market.update(symbol, |s| {
            if let Some(open) = s.candles.iter_mut().find(|c| c.open_time_ms == hour) {
                open.quote_volume = quote_volume;
            } else {
                s.candles
                    .push(Candle::flat(hour, s.last_price, quote_volume));
            }
        });
        lock(&self.spikes).insert(
            symbol.to_string(),
            SpikeMark {
                injected_ms: now,
                first_event_ms: None,
                quote_volume,
            },
        );
        now
    }

    /// Puts `symbol`'s open hour at 4× its previous hour plus 3 M (a spike
    /// under the default rule whatever the symbol's size); `None` for an
    /// unknown symbol.
    pub(crate) fn spike(&self, symbol: &str) -> Option<(i64, f64)> {
        let hour = Candle::hour_start(self.now());
        let previous = self.market.read(|m| {
            m.get(symbol).map(|s| {
                s.candles
                    .iter()
                    .filter(|c| c.open_time_ms < hour)
                    .map(|c| c.quote_volume)
                    .next_back()
                    .unwrap_or(0.0)
            })
        })?;
        let volume = previous * 4.0 + 3e6;
        Some((self.set_open_hour_volume(symbol, volume), volume))
    }

    /// Every injected volume: symbol, when, first event time carrying it.
    pub(crate) fn spike_marks(&self) -> Value {
        Value::Array(
            lock(&self.spikes)
                .iter()
                .map(|(symbol, m)| {
                    json!({"symbol": symbol, "injectedMs": m.injected_ms,
                           "firstEventMs": m.first_event_ms, "quoteVolume": m.quote_volume})
                })
                .collect(),
        )
    }

    /// Shifts the streams' clock by `offset_ms`.
    pub(crate) fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.clock_offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    /// The streams' clock, unix ms.
    pub(crate) fn now(&self) -> i64 {
        now_ms() + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn total_connections(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    pub(crate) fn set_legacy_silent(&self, silent: bool) {
        self.legacy_silent.store(silent, Ordering::SeqCst);
    }

    pub(crate) fn set_interval(&self, interval: Duration) {
        *lock(&self.interval) = interval;
    }

    pub(crate) fn send_garbage(&self) {
        lock(&self.broadcasts).push(Broadcast::Garbage);
    }

    pub(crate) fn send_ping(&self, payload: &[u8]) {
        lock(&self.broadcasts).push(Broadcast::Ping(payload.to_vec()));
    }

    pub(crate) fn send_closed_kline(&self, symbol: &str, candle: Candle) {
        lock(&self.broadcasts).push(Broadcast::ClosedKline(symbol.to_string(), candle));
    }

    pub(crate) fn subscriptions(&self) -> Vec<(String, Vec<String>)> {
        lock(&self.subscriptions).clone()
    }

    pub(crate) fn peak_client_rate(&self) -> usize {
        self.peak_client_rate.load(Ordering::SeqCst)
    }

    pub(crate) fn pongs(&self) -> Vec<Vec<u8>> {
        lock(&self.pongs).clone()
    }

    /// Serves one accepted TCP connection until it closes or is dropped.
    pub(crate) fn serve(&self, stream: TcpStream, conns: &Arc<Connections>) {
        if stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
        {
            return;
        }
        let _ = stream.set_nodelay(true);
        let mut mode = None;
        // The error type is tungstenite's, not ours to shrink.
        #[allow(clippy::result_large_err)]
        let callback = |request: &Request, response: Response| {
            mode = self.mode_for(request);
            if mode.is_some() {
                Ok(response)
            } else {
                let mut not_found = ErrorResponse::new(Some("Not found".into()));
                *not_found.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
                Err(not_found)
            }
        };
        let Ok(socket) = tungstenite::accept_hdr(stream, callback) else {
            return;
        };
        let Some(mode) = mode else {
            return;
        };
        let Ok(guard) = conns.register(socket.get_ref()) else {
            return;
        };
        self.total.fetch_add(1, Ordering::SeqCst);
        if socket.get_ref().set_read_timeout(Some(POLL)).is_err() {
            return;
        }
        match mode {
            Mode::Live(streams) => self.serve_live(socket, &guard, &streams),
            Mode::Silent => serve_silent(socket, &guard),
        }
        // Leaving without a close frame: the socket just closes.
        drop(guard);
    }

    /// Decides what to serve from the request path; `None` rejects it (404).
    fn mode_for(&self, request: &Request) -> Option<Mode> {
        let uri = request.uri();
        let streams: Vec<String> = uri
            .query()
            .map(parse_query)
            .and_then(|pairs| query_value(&pairs, "streams").map(str::to_string))
            .map(|s| {
                s.split('/')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        match uri.path().trim_end_matches('/') {
            "/market/stream" => Some(Mode::Live(streams)),
            "/stream" if self.legacy_silent.load(Ordering::SeqCst) => Some(Mode::Silent),
            "/stream" => Some(Mode::Live(streams)),
            _ => None,
        }
    }

    fn serve_live(&self, mut socket: WebSocket<TcpStream>, guard: &ConnGuard, streams: &[String]) {
        let mut seen = lock(&self.broadcasts).len();
        let mut last_push: Option<Instant> = None;
        let mut klines = KlineSubscriptions::default();
        while guard.is_open() {
            if self.stalled.load(Ordering::SeqCst) {
                // Not even reading: no pong goes out either.
                thread::sleep(POLL);
                continue;
            }
            let pending: Vec<Broadcast> = {
                let log = lock(&self.broadcasts);
                let new = log[seen.min(log.len())..].to_vec();
                seen = log.len();
                new
            };
            for broadcast in pending {
                let sent = match broadcast {
                    Broadcast::Ping(payload) => {
                        send(&mut socket, Message::Ping(Bytes::from(payload)))
                    }
                    Broadcast::Garbage => send(
                        &mut socket,
                        Message::text("{\"stream\":\"!markPrice@arr\",\"data\":[{\"e\":"),
                    )
                    .and_then(|()| {
                        send(
                            &mut socket,
                            Message::Binary(Bytes::from_static(&[
                                0xde, 0xad, 0xbe, 0xef, 0x00, 0xff,
                            ])),
                        )
                    }),
                    Broadcast::ClosedKline(symbol, candle) => {
                        if klines.streams.contains_key(&symbol) {
                            let frame = json::ws_kline(&symbol, &candle, self.now(), true);
                            send(&mut socket, Message::text(frame))
                        } else {
                            Ok(())
                        }
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            let interval = *lock(&self.interval);
            if last_push.is_none_or(|t| t.elapsed() >= interval) {
                last_push = Some(Instant::now());
                for frame in self.frames(streams) {
                    if send(&mut socket, Message::text(frame)).is_err() {
                        return;
                    }
                }
            }
            if klines
                .last_push
                .is_none_or(|t| t.elapsed() >= KLINE_INTERVAL)
            {
                klines.last_push = Some(Instant::now());
                for frame in self.kline_frames(&mut klines) {
                    if send(&mut socket, Message::text(frame)).is_err() {
                        return;
                    }
                }
            }
            match socket.read() {
                Ok(Message::Pong(payload)) => {
                    if klines.count_client_message(&self.peak_client_rate) {
                        return;
                    }
                    lock(&self.pongs).push(payload.to_vec())
                }
                Ok(Message::Text(text)) => {
                    if klines.count_client_message(&self.peak_client_rate) {
                        return;
                    }
                    if let Some(reply) = self.on_control(&mut klines, text.as_str()) {
                        if send(&mut socket, Message::text(reply)).is_err() {
                            return;
                        }
                    }
                }
                // Pings are answered by tungstenite on the next read/flush.
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(_) => return,
            }
            match socket.flush() {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Applies a SUBSCRIBE/UNSUBSCRIBE; the reply Binance sends, if any.
    fn on_control(&self, klines: &mut KlineSubscriptions, text: &str) -> Option<String> {
        let request: Value = serde_json::from_str(text).ok()?;
        let method = request.get("method")?.as_str()?.to_string();
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let params: Vec<String> = request
            .get("params")?
            .as_array()?
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        for stream in &params {
            let Some(symbol) = stream.strip_suffix("@kline_1h") else {
                continue;
            };
            let symbol = symbol.to_ascii_uppercase();
            match method.as_str() {
                "SUBSCRIBE" => {
                    klines.streams.entry(symbol).or_insert(None);
                }
                "UNSUBSCRIBE" => {
                    klines.streams.remove(&symbol);
                }
                _ => {}
            }
        }
        lock(&self.subscriptions).push((method, params));
        Some(json!({"result": null, "id": id}).to_string())
    }

    /// One frame per subscribed symbol: its candle of the hour holding now
    /// (`k.x` false), preceded once by the previous hour closed (`k.x` true)
    /// when the hour turned since the last push.
    fn kline_frames(&self, klines: &mut KlineSubscriptions) -> Vec<String> {
        let now = self.now();
        let hour = Candle::hour_start(now);
        let mut pushed = Vec::new();
        let frames = self.market.read(|m| {
            let mut frames = Vec::new();
            for (symbol, last_hour) in klines.streams.iter_mut() {
                let Some(state) = m.get(symbol) else {
                    continue;
                };
                if let Some(seen) = *last_hour {
                    if seen < hour {
                        if let Some(closed) = state.candles.iter().find(|c| c.open_time_ms == seen)
                        {
                            frames.push(json::ws_kline(symbol, closed, now, true));
                        }
                    }
                }
                // An hour without trades yet starts at zero volume, as on Binance.
                let fresh;
                let open = match state.candles.iter().find(|c| c.open_time_ms == hour) {
                    Some(open) => Some(open),
                    None if !state.candles.is_empty() => {
                        fresh = Candle::flat(hour, state.last_price, 0.0);
                        Some(&fresh)
                    }
                    None => None,
                };
                if let Some(open) = open {
                    frames.push(json::ws_kline(symbol, open, now, false));
                    *last_hour = Some(open.open_time_ms);
                    pushed.push(symbol.clone());
                }
            }
            frames
        });
        let mut spikes = lock(&self.spikes);
        if !spikes.is_empty() {
            for symbol in &pushed {
                if let Some(mark) = spikes.get_mut(symbol) {
                    if mark.first_event_ms.is_none() && mark.injected_ms <= now {
                        mark.first_event_ms = Some(now);
                    }
                }
            }
        }
        frames
    }

    /// The combined-stream frames for the requested streams, rendered now.
    fn frames(&self, streams: &[String]) -> Vec<String> {
        let now = self.now();
        streams
            .iter()
            .filter_map(|stream| {
                let render: fn(&super::market::SymbolState, i64) -> Value = match stream.as_str() {
                    "!markPrice@arr" | "!markPrice@arr@1s" => json::ws_mark_price,
                    "!ticker@arr" => json::ws_ticker,
                    _ => return None,
                };
                let data: Vec<Value> = self
                    .market
                    .read(|m| m.iter().map(|s| render(s, now)).collect());
                Some(json!({"stream": stream, "data": data}).to_string())
            })
            .collect()
    }
}

/// One connection's kline subscriptions and its client-message rate.
#[derive(Debug, Default)]
struct KlineSubscriptions {
    /// Subscribed symbol → open time of the candle last pushed.
    streams: std::collections::BTreeMap<String, Option<i64>>,
    /// When the last kline push went out.
    last_push: Option<Instant>,
    /// When the client's messages of the last second arrived.
    received: std::collections::VecDeque<Instant>,
}

impl KlineSubscriptions {
    /// Counts one message from the client and raises `peak` to the most seen
    /// in one second; true when the client went past
    /// [`CLIENT_MESSAGES_PER_SECOND`], where Binance disconnects it.
    fn count_client_message(&mut self, peak: &AtomicUsize) -> bool {
        let now = Instant::now();
        while self
            .received
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.received.pop_front();
        }
        self.received.push_back(now);
        peak.fetch_max(self.received.len(), Ordering::SeqCst);
        self.received.len() > CLIENT_MESSAGES_PER_SECOND
    }
}

/// Sends `message`; a write that times out (client not reading) only loses
/// the frame, any other error ends the connection.
fn send(socket: &mut WebSocket<TcpStream>, message: Message) -> Result<(), tungstenite::Error> {
    match socket.send(message) {
        Err(tungstenite::Error::Io(e)) if is_timeout(&e) => Ok(()),
        other => other,
    }
}

/// Legacy URL after the cut-over: read and discard whatever the client sends
/// (no pong, no close reply), never write.
fn serve_silent(mut socket: WebSocket<TcpStream>, guard: &ConnGuard) {
    let mut sink = [0u8; 4096];
    while guard.is_open() {
        match socket.get_mut().read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
