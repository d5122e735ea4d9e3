//! The funding stream: one WebSocket to Binance's `/market` route carrying
//! `!markPrice@arr` and `!ticker@arr`, read on its own thread (tungstenite is
//! blocking), merged into the [`FundingCache`].
//!
//! The reader never blocks for long: the socket has a 1 s read timeout, so
//! every second the thread beats its heartbeat, checks shutdown, refreshes
//! the API snapshot and checks the link. A link is dead when no *data*
//! message arrived for the silence limit (30 s by default): this also catches
//! Binance's retired legacy URL, which connects and acknowledges but never
//! sends data. Dead, closed or failed links are reconnected with jittered
//! exponential backoff (1 s doubling to 60 s, reset after a healthy
//! connection); the connection is replaced on purpose before the server's
//! 24 h cut-off. Pings are answered by tungstenite (queued on read, flushed
//! right away here). A garbage frame is logged (rate-limited) and skipped; it
//! neither panics nor reconnects.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::cache::FundingCache;
use super::frames::{self, Frame};
use super::proxy::BinanceProxy;
use crate::clock::{iso, unix_ms};
use crate::jobs::status::StatusBoard;
use crate::outage::{lasting_text, OutageLog, Say, SUMMARY_EVERY};
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// The job name: `JOB` log field, `/health` key, `--only` name.
pub const NAME: &str = "funding_stream";
/// The streams requested on the one connection.
pub const STREAMS: &str = "!markPrice@arr/!ticker@arr";
/// How long one blocking read may wait, so the loop stays responsive.
const READ_TICK: Duration = Duration::from_secs(1);
/// TCP connect and WebSocket handshake limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocked write (pong, close) gives up after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Binance closes a connection at 24 h; we replace it before that.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(23 * 3600 + 30 * 60);
/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A connection that carried data for this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// At most one garbage-frame log line per this period.
const GARBAGE_LOG_EVERY: Duration = Duration::from_secs(60);
/// Largest frame or message accepted (a 600-symbol ticker array is ~200 KB).
const MAX_MESSAGE: usize = 16 << 20;
/// How long the close handshake may take at shutdown.
const CLOSE_BUDGET: Duration = Duration::from_secs(2);
/// How often the `/health` record is refreshed while nothing changes.
const BOARD_EVERY: Duration = Duration::from_secs(5);

/// What the stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// The job is switched off; no thread runs.
    Disabled,
    /// Resolving, connecting or handshaking.
    Connecting,
    /// The WebSocket is open.
    Connected,
    /// Waiting before the next attempt.
    Backoff,
    /// Shut down.
    Stopped,
}

impl StreamState {
    fn from_u8(v: u8) -> StreamState {
        match v {
            1 => StreamState::Connecting,
            2 => StreamState::Connected,
            3 => StreamState::Backoff,
            4 => StreamState::Stopped,
            _ => StreamState::Disabled,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            StreamState::Disabled => 0,
            StreamState::Connecting => 1,
            StreamState::Connected => 2,
            StreamState::Backoff => 3,
            StreamState::Stopped => 4,
        }
    }
}

/// The stream's counters, shared with the HTTP handlers; cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    /// When the status (the process's stream) was created, for uptime.
    started: Instant,
    /// [`StreamState`] as a number.
    state: AtomicU8,
    /// Data frames received since start.
    messages: AtomicU64,
    /// Symbol updates (one per symbol per frame) received since start: what
    /// the old daemon's `messagesReceived` counted.
    symbol_updates: AtomicU64,
    /// Unreadable frames received since start.
    garbage: AtomicU64,
    /// Connection attempts after the first.
    reconnects: AtomicU64,
    /// Connections that opened (the stream job's "runs").
    connections: AtomicU64,
    /// When the current connection opened, ms; 0 when not connected.
    connected_since_ms: AtomicU64,
    /// When the last connection opened, ms; 0 when never.
    last_connected_ms: AtomicU64,
    /// When the last data frame arrived, ms; 0 when never.
    last_message_ms: AtomicU64,
    /// Why the last connection ended or failed.
    last_error: Mutex<Option<String>>,
}

/// The stream's state for `/health` and the dashboard.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    /// `disabled`, `connecting`, `connected`, `backoff` or `stopped`.
    pub state: StreamState,
    /// Whether the socket is open now.
    pub connected: bool,
    /// ISO time the current connection opened.
    pub connected_since: Option<String>,
    /// ISO time of the last data frame.
    pub last_message_at: Option<String>,
    /// Data frames received since start.
    pub messages_received: u64,
    /// Unreadable frames skipped since start.
    pub garbage_frames: u64,
    /// Connection attempts after the first.
    pub reconnect_attempts: u64,
    /// Why the last connection ended or failed.
    pub last_error: Option<String>,
}

fn opt_ms(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

impl Default for StreamStatus {
    fn default() -> Self {
        StreamStatus::new()
    }
}

impl StreamStatus {
    /// A status in state `disabled`, until a stream thread takes it over.
    pub fn new() -> StreamStatus {
        StreamStatus {
            inner: Arc::new(StatusInner {
                started: Instant::now(),
                state: AtomicU8::new(StreamState::Disabled.to_u8()),
                messages: AtomicU64::new(0),
                symbol_updates: AtomicU64::new(0),
                garbage: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                connected_since_ms: AtomicU64::new(0),
                last_connected_ms: AtomicU64::new(0),
                connections: AtomicU64::new(0),
                last_message_ms: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> StreamState {
        StreamState::from_u8(self.inner.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, state: StreamState) {
        self.inner.state.store(state.to_u8(), Ordering::Relaxed);
    }

    /// Whether the socket is open.
    pub fn connected(&self) -> bool {
        self.state() == StreamState::Connected
    }

    /// Time since the status was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Data frames received.
    pub fn messages_received(&self) -> u64 {
        self.inner.messages.load(Ordering::Relaxed)
    }

    /// Symbol updates received (a frame carries one per symbol that changed).
    pub fn symbol_updates(&self) -> u64 {
        self.inner.symbol_updates.load(Ordering::Relaxed)
    }

    /// Unreadable frames skipped.
    pub fn garbage_frames(&self) -> u64 {
        self.inner.garbage.load(Ordering::Relaxed)
    }

    /// Connection attempts after the first.
    pub fn reconnect_attempts(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// Connections that opened since start.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// When the last connection opened, ms; `None` when never.
    pub fn last_connected_ms(&self) -> Option<u64> {
        opt_ms(self.inner.last_connected_ms.load(Ordering::Relaxed))
    }

    /// When the current connection opened, ms.
    pub fn connected_since_ms(&self) -> Option<u64> {
        opt_ms(self.inner.connected_since_ms.load(Ordering::Relaxed))
    }

    /// When the last data frame arrived, ms.
    pub fn last_message_ms(&self) -> Option<u64> {
        opt_ms(self.inner.last_message_ms.load(Ordering::Relaxed))
    }

    /// Why the last connection ended or failed.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_error(&self, error: Option<String>) {
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = error;
    }

    fn on_connected(&self, now_ms: u64) {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        self.inner
            .connected_since_ms
            .store(now_ms, Ordering::Relaxed);
        self.inner
            .last_connected_ms
            .store(now_ms, Ordering::Relaxed);
        self.set_state(StreamState::Connected);
    }

    fn on_disconnected(&self, why: String) {
        self.inner.connected_since_ms.store(0, Ordering::Relaxed);
        self.set_last_error(Some(why));
    }

    fn on_message(&self, now_ms: u64, symbol_updates: usize) {
        self.inner.messages.fetch_add(1, Ordering::Relaxed);
        self.inner
            .symbol_updates
            .fetch_add(symbol_updates as u64, Ordering::Relaxed);
        self.inner.last_message_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The `/health` view.
    pub fn view(&self) -> StreamView {
        let to_iso = |ms: Option<u64>| ms.map(|ms| iso(crate::clock::from_unix_ms(ms)));
        StreamView {
            state: self.state(),
            connected: self.connected(),
            connected_since: to_iso(self.connected_since_ms()),
            last_message_at: to_iso(self.last_message_ms()),
            messages_received: self.messages_received(),
            garbage_frames: self.garbage_frames(),
            reconnect_attempts: self.reconnect_attempts(),
            last_error: self.last_error(),
        }
    }
}

/// How the stream connects and when it gives a link up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Base URL (`wss://fstream.binance.com/market`); `/stream?streams=…` is appended.
    pub base_url: String,
    /// No data message for this long: the link is dead.
    pub silence: Duration,
    /// Replace the connection after this long (before Binance's 24 h cut-off).
    pub max_connection_age: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// The HTTP CONNECT proxy to reach Binance through, if any.
    pub proxy: Option<BinanceProxy>,
}

impl StreamSettings {
    /// Production settings for `base_url` and the silence limit.
    pub fn new(base_url: &str, silence: Duration) -> StreamSettings {
        StreamSettings {
            base_url: base_url.trim_end_matches('/').to_string(),
            silence,
            max_connection_age: MAX_CONNECTION_AGE,
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            proxy: None,
        }
    }

    /// These settings, connecting through `proxy`.
    pub fn with_proxy(mut self, proxy: Option<BinanceProxy>) -> StreamSettings {
        self.proxy = proxy;
        self
    }

    /// The full stream URL.
    pub fn url(&self) -> String {
        format!("{}/stream?streams={STREAMS}", self.base_url)
    }

    /// The host (and port) of the base URL, for log lines.
    pub fn host(&self) -> &str {
        let rest = self
            .base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// How long the stream may be without data before `/health` calls it
    /// failing: two silence periods (one reconnect's worth), at least 5 s.
    pub fn health_grace(&self) -> Duration {
        (self.silence * 2).max(Duration::from_secs(5))
    }
}

/// Jittered exponential backoff: the n-th delay is drawn from
/// `[d/2, d]` with `d = min * 2^n` capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    min: Duration,
    /// Cap.
    max: Duration,
    /// The un-jittered next delay.
    next: Duration,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next delay; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        // Jitter spreads reconnects of many clients after a Binance outage.
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to the first delay, after a healthy connection.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Logs garbage frames at most once per period, with the count suppressed.
#[derive(Debug)]
struct GarbageLog {
    /// When the last line was logged.
    last: Option<Instant>,
    /// Frames not logged since.
    suppressed: u64,
}

impl GarbageLog {
    fn record(&mut self, why: &str, sample: &str) {
        let due = self.last.is_none_or(|t| t.elapsed() >= GARBAGE_LOG_EVERY);
        if due {
            let sample: String = sample.chars().take(120).collect();
            tracing::warn!(
                error = why,
                sample = %sample,
                suppressed = self.suppressed,
                "funding stream: skipping an unreadable frame"
            );
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// Shutdown: close frame sent.
    Shutdown,
    /// Replaced on purpose before the 24 h cut-off.
    Planned,
    /// Closed, failed or silent; the reason is logged and shown.
    Lost(String),
    /// The connection could not be opened (DNS, refused, TLS, handshake):
    /// logged as an outage, not line by line.
    Unreachable(String),
}

/// Everything the stream thread holds.
struct Runner {
    settings: StreamSettings,
    cache: FundingCache,
    status: StreamStatus,
    board: StatusBoard,
    heartbeat: Heartbeat,
    shutdown: Shutdown,
    garbage: GarbageLog,
    /// Last time data flowed (or the stream started), for `/health`.
    healthy_at: Instant,
    /// When the `/health` record was last written.
    board_at: Option<Instant>,
    /// Whether the last `/health` record said healthy.
    board_ok: Option<bool>,
    /// Failed attempts or lost links since data last flowed.
    failures_in_a_row: u64,
    /// Failed connection attempts since the last successful one, logged as
    /// a first line, rare summaries and a recovery line.
    outage: OutageLog,
}

/// Starts the stream thread; it runs until `shutdown`.
pub fn spawn(
    settings: StreamSettings,
    cache: FundingCache,
    status: StreamStatus,
    board: StatusBoard,
    heartbeat: Heartbeat,
    shutdown: Shutdown,
) -> io::Result<JoinHandle<()>> {
    board.update(NAME, |s| {
        s.schedule = "continuous (WebSocket)".into();
    });
    status.set_state(StreamState::Connecting);
    let mut runner = Runner {
        settings,
        cache,
        status,
        board,
        heartbeat,
        shutdown,
        garbage: GarbageLog {
            last: None,
            suppressed: 0,
        },
        healthy_at: Instant::now(),
        board_at: None,
        board_ok: None,
        failures_in_a_row: 0,
        outage: OutageLog::default(),
    };
    std::thread::Builder::new()
        .name(NAME.into())
        .spawn(move || {
            let span = tracing::info_span!("job", JOB = NAME);
            let _entered = span.enter();
            runner.run();
        })
}

impl Runner {
    fn run(&mut self) {
        let url = self.settings.url();
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        let mut first = true;
        tracing::info!(url = %url, "funding stream starting");
        while !self.shutdown.is_triggered() {
            if !first {
                self.status.inner.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            self.status.set_state(StreamState::Connecting);
            self.heartbeat.beat_blocking();
            let ended = match connect(&url, self.settings.proxy.as_ref()) {
                Ok(ws) => {
                    let opened = Instant::now();
                    self.status.on_connected(unix_ms(SystemTime::now()));
                    match self.outage.recovered(opened) {
                        Some((failures, lasting)) => tracing::info!(
                            url = %url,
                            "funding stream connected after {failures} failed attempts over {}",
                            lasting_text(lasting)
                        ),
                        None => tracing::info!(url = %url, "funding stream connected"),
                    }
                    let (ended, got_data) = self.session(ws);
                    if got_data && opened.elapsed() >= HEALTHY_AFTER {
                        backoff.reset();
                    }
                    ended
                }
                Err(why) => Ended::Unreachable(format!("connect failed: {why}")),
            };
            let delay = match ended {
                Ended::Shutdown => {
                    self.status.on_disconnected("stopped".into());
                    tracing::info!("funding stream closed for shutdown");
                    break;
                }
                Ended::Planned => {
                    self.status
                        .on_disconnected("planned reconnect before the 24 h cut-off".into());
                    tracing::info!(
                        "funding stream: planned reconnect before Binance's 24 h cut-off"
                    );
                    Duration::ZERO
                }
                Ended::Unreachable(why) => {
                    let delay = backoff.next_delay();
                    self.failures_in_a_row += 1;
                    // One line when it starts, a summary every few minutes
                    // while it lasts; each attempt only at debug.
                    match self.outage.failed(Instant::now()) {
                        Say::First => tracing::warn!(
                            reason = %why,
                            "funding stream: cannot reach Binance at {}; retrying with backoff (up to {} s apart), a summary follows every {} min while this lasts",
                            self.settings.host(),
                            self.settings.backoff_max.as_secs(),
                            SUMMARY_EVERY.as_secs() / 60
                        ),
                        Say::Summary { failures, lasting } => tracing::warn!(
                            reason = %why,
                            "funding stream: Binance at {} still unreachable: {failures} attempts failed over {}; still retrying",
                            self.settings.host(),
                            lasting_text(lasting)
                        ),
                        Say::Quiet => tracing::debug!(
                            reason = %why,
                            retry_in_ms = delay.as_millis() as u64,
                            "funding stream: connect failed; retrying"
                        ),
                    }
                    self.status.on_disconnected(why);
                    delay
                }
                Ended::Lost(why) => {
                    let delay = backoff.next_delay();
                    self.failures_in_a_row += 1;
                    tracing::warn!(
                        reason = %why,
                        retry_in_ms = delay.as_millis() as u64,
                        "funding stream disconnected; reconnecting after backoff"
                    );
                    self.status.on_disconnected(why);
                    delay
                }
            };
            self.status.set_state(StreamState::Backoff);
            self.wait(delay);
        }
        self.status.set_state(StreamState::Stopped);
        self.report_health(true);
    }

    /// Sleeps `delay` in short slices, staying live and responsive.
    fn wait(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        loop {
            self.heartbeat.beat_blocking();
            self.cache.rebuild_if_due(unix_ms(SystemTime::now()));
            self.report_health(false);
            let now = Instant::now();
            if self.shutdown.is_triggered() || now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(250)));
        }
    }

    /// Reads one connection until it ends; also says whether data arrived.
    fn session(&mut self, mut ws: WebSocket<MaybeTlsStream<TcpStream>>) -> (Ended, bool) {
        let opened = Instant::now();
        let mut last_data = Instant::now();
        let mut got_data = false;
        if let Err(e) = set_read_timeout(&mut ws, READ_TICK) {
            return (
                Ended::Lost(format!("cannot set the read timeout: {e}")),
                false,
            );
        }
        loop {
            self.heartbeat.beat_blocking();
            if self.shutdown.is_triggered() {
                close(&mut ws);
                return (Ended::Shutdown, got_data);
            }
            if opened.elapsed() >= self.settings.max_connection_age {
                close(&mut ws);
                return (Ended::Planned, got_data);
            }
            if last_data.elapsed() >= self.settings.silence {
                close(&mut ws);
                return (
                    Ended::Lost(format!(
                        "no data for {} s (a retired URL connects but sends nothing)",
                        last_data.elapsed().as_secs()
                    )),
                    got_data,
                );
            }
            self.cache.rebuild_if_due(unix_ms(SystemTime::now()));
            self.report_health(false);
            match ws.read() {
                Ok(Message::Text(text)) => {
                    if self.on_text(text.as_str()) {
                        last_data = Instant::now();
                        got_data = true;
                        self.healthy_at = Instant::now();
                        self.failures_in_a_row = 0;
                    }
                }
                Ok(Message::Binary(bytes)) => {
                    self.on_garbage("binary frame", &format!("{} bytes", bytes.len()));
                }
                Ok(Message::Ping(_)) => {
                    // tungstenite queued the pong with the same payload; send it now.
                    if let Err(e) = ws.flush() {
                        if !is_timeout(&e) {
                            return (Ended::Lost(format!("pong failed: {e}")), got_data);
                        }
                    }
                }
                Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    let why = match frame {
                        Some(f) => format!("server closed: {} {}", f.code, f.reason),
                        None => "server closed".to_string(),
                    };
                    // Let tungstenite send the close reply.
                    let _ = ws.flush();
                    return (Ended::Lost(why), got_data);
                }
                Err(e) if is_timeout(&e) => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    return (Ended::Lost("connection closed".into()), got_data);
                }
                Err(e) => return (Ended::Lost(format!("read failed: {e}")), got_data),
            }
        }
    }

    /// Applies one text frame; true when it was a data frame.
    fn on_text(&mut self, text: &str) -> bool {
        match frames::parse(text) {
            Ok(Frame::Data { updates, .. }) => {
                let now_ms = unix_ms(SystemTime::now());
                let applied = self.cache.apply(&updates, now_ms);
                self.status.on_message(now_ms, applied);
                true
            }
            Ok(Frame::Control) => {
                tracing::debug!(frame = %text.chars().take(120).collect::<String>(), "funding stream: control frame");
                false
            }
            Err(e) => {
                self.on_garbage(&e.0, text);
                false
            }
        }
    }

    fn on_garbage(&mut self, why: &str, sample: &str) {
        self.status.inner.garbage.fetch_add(1, Ordering::Relaxed);
        self.garbage.record(why, sample);
    }

    /// Writes the stream's `/health` record when its health flips, and every
    /// few seconds to refresh the summary.
    fn report_health(&mut self, force: bool) {
        let ok = self.healthy_at.elapsed() < self.settings.health_grace()
            && self.status.state() != StreamState::Stopped;
        let due = force
            || self.board_ok != Some(ok)
            || self.board_at.is_none_or(|t| t.elapsed() >= BOARD_EVERY);
        if !due {
            return;
        }
        // Before the first data and within the grace, stay "pending".
        let pending = ok && self.status.last_message_ms().is_none();
        let summary = format!(
            "{}; {} symbols; {} messages; {} reconnects",
            match self.status.state() {
                StreamState::Connected => "connected",
                StreamState::Connecting => "connecting",
                StreamState::Backoff => "waiting to reconnect",
                StreamState::Stopped => "stopped",
                StreamState::Disabled => "disabled",
            },
            self.cache.funding_len(),
            self.status.messages_received(),
            self.status.reconnect_attempts()
        );
        let since = self.healthy_at.elapsed().as_secs();
        let last_error = self.status.last_error();
        let failures = self.failures_in_a_row.max(1);
        let stopped = self.status.state() == StreamState::Stopped;
        self.board.update(NAME, |s| {
            s.running = !stopped;
            s.last_run = self
                .status
                .connected_since_ms()
                .map(crate::clock::from_unix_ms);
            // A run of the stream is a connection, not a frame: frames are
            // `volspike_websocket_messages_total`.
            s.runs = self.status.connections();
            if pending {
                return;
            }
            if ok || stopped {
                s.last_ok = Some(true);
                s.consecutive_failures = 0;
                s.last_summary = Some(summary);
            } else {
                if s.last_ok != Some(false) {
                    s.failures += 1;
                    s.last_error_at = Some(SystemTime::now());
                }
                s.last_ok = Some(false);
                s.consecutive_failures = failures;
                s.last_error = Some(format!(
                    "no data for {since} s; last problem: {}",
                    last_error.as_deref().unwrap_or("none recorded")
                ));
            }
        });
        self.board_at = Some(Instant::now());
        self.board_ok = Some(ok);
    }
}

/// Whether a tungstenite error is only a read or write timeout.
pub(crate) fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// The TCP socket under a (possibly TLS) stream.
fn tcp(stream: &MaybeTlsStream<TcpStream>) -> Option<&TcpStream> {
    match stream {
        MaybeTlsStream::Plain(s) => Some(s),
        MaybeTlsStream::Rustls(s) => Some(&s.sock),
        _ => None,
    }
}

pub(crate) fn set_read_timeout(
    ws: &mut WebSocket<MaybeTlsStream<TcpStream>>,
    t: Duration,
) -> io::Result<()> {
    match tcp(ws.get_ref()) {
        Some(s) => s.set_read_timeout(Some(t)),
        None => Err(io::Error::other("unknown stream type")),
    }
}

/// Sends a close frame and waits briefly for the server's reply.
pub(crate) fn close(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>) {
    if ws.close(None).is_err() {
        return;
    }
    let until = Instant::now() + CLOSE_BUDGET;
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// Opens the WebSocket with bounded connect and handshake times (tungstenite's
/// own `connect` has neither). `ws://` is plain TCP, `wss://` rustls with the
/// process's crypto provider and the bundled web PKI roots.
/// A direct TCP connection to `host:port`, trying each resolved address.
fn direct(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last_error = format!("{host} resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last_error)
}

pub(crate) fn connect(
    url: &str,
    proxy: Option<&BinanceProxy>,
) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, String> {
    let request = url
        .into_client_request()
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") => 443,
        _ => 80,
    });
    let tcp = match proxy.filter(|p| p.applies_to(&host)) {
        // The tunnel carries the TLS handshake and the WebSocket end to end.
        Some(proxy) => proxy.tunnel(&host, port, CONNECT_TIMEOUT)?,
        None => direct(&host, port)?,
    };
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|_| tcp.set_write_timeout(Some(WRITE_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connector = tungstenite::Connector::Rustls(crate::net::websocket_tls());
    match tungstenite::client_tls_with_config(request, tcp, Some(config), Some(connector)) {
        Ok((ws, _response)) => Ok(ws),
        // With a read timeout, a handshake that stalls comes back as "interrupted".
        Err(HandshakeError::Interrupted(_)) => Err(format!(
            "handshake timed out after {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        Err(HandshakeError::Failure(tungstenite::Error::Http(response)))
            if response.status().as_u16() == 451 =>
        {
            Err(format!(
                "handshake refused with HTTP 451: {}",
                crate::binance::REGION_REFUSED
            ))
        }
        Err(HandshakeError::Failure(e)) => Err(format!("handshake failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut caps = Vec::new();
        for _ in 0..9 {
            let d = b.next_delay();
            caps.push(d);
        }
        let expected = [1, 2, 4, 8, 16, 32, 60, 60, 60];
        for (d, cap) in caps.iter().zip(expected) {
            let cap = Duration::from_secs(cap);
            assert!(
                *d >= cap / 2 && *d <= cap,
                "{d:?} not within [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn url_and_grace() {
        let s = StreamSettings::new("wss://fstream.binance.com/market/", Duration::from_secs(30));
        assert_eq!(
            s.url(),
            "wss://fstream.binance.com/market/stream?streams=!markPrice@arr/!ticker@arr"
        );
        assert_eq!(s.health_grace(), Duration::from_secs(60));
        assert!(s.max_connection_age < Duration::from_secs(24 * 3600));
    }

    #[test]
    fn status_starts_disabled_and_counts() {
        let status = StreamStatus::new();
        assert_eq!(status.state(), StreamState::Disabled);
        status.on_connected(5_000);
        status.on_message(6_000, 612);
        status.on_message(7_000, 3);
        assert!(status.connected());
        assert_eq!(status.last_connected_ms(), Some(5_000));
        assert_eq!(status.connections(), 1);
        assert_eq!(status.messages_received(), 2);
        assert_eq!(status.symbol_updates(), 615);
        status.on_disconnected("gone".into());
        assert_eq!(status.connected_since_ms(), None);
        assert_eq!(status.last_error().as_deref(), Some("gone"));
    }

    #[test]
    fn a_451_handshake_names_the_region_and_the_setting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::{Read, Write};
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 451 Unavailable For Legal Reasons\r\nContent-Length: 0\r\n\r\n",
                );
            }
        });
        let err =
            connect(&format!("ws://127.0.0.1:{port}/market/stream"), None).expect_err("refused");
        assert!(err.contains(crate::binance::REGION_REFUSED), "{err}");
        let _ = server.join();
    }

    #[test]
    fn connect_failures_are_errors_not_panics() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(connect("ws://127.0.0.1:1/stream", None).is_err());
        assert!(connect("not a url", None).is_err());
        // A TLS handshake against a server that hangs up: an error, not a panic.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::Write;
                let _ = s.write_all(b"HTTP/1.1 500 nope\r\n\r\n");
            }
        });
        let err =
            connect(&format!("wss://localhost:{port}/market/stream"), None).expect_err("no TLS");
        assert!(err.contains("handshake"), "{err}");
        let _ = server.join();
    }
}
