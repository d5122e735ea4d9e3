//! The funding stream job: one WebSocket to Binance's `/market` route
//! carrying `!markPrice@arr` and `!ticker@arr`, read on its own thread
//! (tungstenite is blocking), merged into the [`FundingCache`]. The link
//! itself (connect, read timeout, close) is [`crate::binance::stream`]; this
//! file is the run loop: reconnects, health and the garbage-frame log; when
//! a connection ends, resets the backoff or is healthy is decided in
//! [`rules`], pure.
//!
//! The reader never blocks for long: the socket has a 1 s read timeout, so
//! every second the thread beats its heartbeat, checks shutdown, refreshes
//! the API snapshot and checks the link. A link is dead when no *data*
//! message arrived for the silence limit (30 s by default). Dead, closed or
//! failed links are reconnected with jittered exponential backoff (1 s
//! doubling to 60 s, reset after a healthy connection); the connection is
//! replaced on purpose before the server's 24 h cut-off. Pings are answered
//! by tungstenite (queued on read, flushed right away here). A garbage frame
//! is logged (rate-limited) and skipped; it neither panics nor reconnects.

pub mod rules;
mod status;

use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tungstenite::Message;

use self::rules::{
    board_due, healthy, resets_backoff, session_end, state_word, Ended, SessionLimits,
};
pub use self::status::{StreamState, StreamStatus, StreamView};
use crate::backoff::Backoff;
use crate::binance::cache::FundingCache;
use crate::binance::frames::{self, Frame};
use crate::binance::stream::{self, Link, StreamSettings};
use crate::clock::unix_ms;
use crate::jobs::status::StatusBoard;
use crate::outage::{lasting_text, OutageLog, Say, SUMMARY_EVERY};
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// The job name: `JOB` log field, `/health` key, `--only` name.
pub const NAME: &str = "funding_stream";
/// How long one blocking read may wait, so the loop stays responsive.
const READ_TICK: Duration = Duration::from_secs(1);
/// At most one garbage-frame log line per this period.
const GARBAGE_LOG_EVERY: Duration = Duration::from_secs(60);

/// What the stream thread is handed by `run`.
pub struct FundingStream {
    /// Where and how to connect.
    pub settings: StreamSettings,
    /// Where the updates are merged.
    pub cache: FundingCache,
    /// The counters the HTTP handlers read.
    pub status: StreamStatus,
    /// The `/health` job records.
    pub board: StatusBoard,
    /// The watchdog's view of this thread.
    pub heartbeat: Heartbeat,
    /// Stops the thread.
    pub shutdown: Shutdown,
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

/// Everything the stream thread holds.
struct Runner {
    /// What `run` handed in.
    job: FundingStream,
    /// Rate-limits the log lines about unreadable frames.
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

impl FundingStream {
    /// Starts the stream thread; it runs until `shutdown`.
    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        self.board.update(NAME, |s| {
            s.schedule = "continuous (WebSocket)".into();
        });
        self.status.set_state(StreamState::Connecting);
        let mut runner = Runner {
            job: self,
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
}

impl Runner {
    fn run(&mut self) {
        let url = self.job.settings.url();
        let mut backoff =
            Backoff::new(self.job.settings.backoff_min, self.job.settings.backoff_max);
        let mut first = true;
        tracing::info!(url = %url, "funding stream starting");
        while !self.job.shutdown.is_triggered() {
            if !first {
                self.job.status.on_reconnect_attempt();
            }
            first = false;
            self.job.status.set_state(StreamState::Connecting);
            self.job.heartbeat.beat_blocking();
            let ended = match stream::connect(&url, self.job.settings.proxy.as_ref()) {
                Ok(ws) => {
                    let opened = Instant::now();
                    self.job.status.on_connected(unix_ms(SystemTime::now()));
                    match self.outage.recovered(opened) {
                        Some((failures, lasting)) => tracing::info!(
                            url = %url,
                            "funding stream connected after {failures} failed attempts over {}",
                            lasting_text(lasting)
                        ),
                        None => tracing::info!(url = %url, "funding stream connected"),
                    }
                    let (ended, got_data) = self.session(ws);
                    if resets_backoff(got_data, opened.elapsed()) {
                        backoff.reset();
                    }
                    ended
                }
                Err(why) => Ended::Unreachable(format!("connect failed: {why}")),
            };
            let delay = match ended {
                Ended::Shutdown => {
                    self.job.status.on_disconnected("stopped".into());
                    tracing::info!("funding stream closed for shutdown");
                    break;
                }
                Ended::Planned => {
                    self.job
                        .status
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
                            self.job.settings.host(),
                            self.job.settings.backoff_max.as_secs(),
                            SUMMARY_EVERY.as_secs() / 60
                        ),
                        Say::Summary { failures, lasting } => tracing::warn!(
                            reason = %why,
                            "funding stream: Binance at {} still unreachable: {failures} attempts failed over {}; still retrying",
                            self.job.settings.host(),
                            lasting_text(lasting)
                        ),
                        Say::Quiet => tracing::debug!(
                            reason = %why,
                            retry_in_ms = delay.as_millis() as u64,
                            "funding stream: connect failed; retrying"
                        ),
                    }
                    self.job.status.on_disconnected(why);
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
                    self.job.status.on_disconnected(why);
                    delay
                }
            };
            self.job.status.set_state(StreamState::Backoff);
            self.wait(delay);
        }
        self.job.status.set_state(StreamState::Stopped);
        self.report_health(true);
    }

    /// Sleeps `delay` in short slices, staying live and responsive.
    fn wait(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        loop {
            self.job.heartbeat.beat_blocking();
            self.job.cache.rebuild_if_due(unix_ms(SystemTime::now()));
            self.report_health(false);
            let now = Instant::now();
            if self.job.shutdown.is_triggered() || now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(250)));
        }
    }

    /// Reads one connection until it ends; also says whether data arrived.
    fn session(&mut self, mut ws: Link) -> (Ended, bool) {
        let opened = Instant::now();
        let mut last_data = Instant::now();
        let mut got_data = false;
        if let Err(e) = stream::set_read_timeout(&mut ws, READ_TICK) {
            return (
                Ended::Lost(format!("cannot set the read timeout: {e}")),
                false,
            );
        }
        loop {
            self.job.heartbeat.beat_blocking();
            let limits = SessionLimits {
                max_age: self.job.settings.max_connection_age,
                silence: self.job.settings.silence,
            };
            let end = session_end(
                self.job.shutdown.is_triggered(),
                opened.elapsed(),
                last_data.elapsed(),
                limits,
            );
            if let Some(ended) = end {
                stream::close(&mut ws);
                return (ended, got_data);
            }
            self.job.cache.rebuild_if_due(unix_ms(SystemTime::now()));
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
                        if !stream::is_timeout(&e) {
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
                Err(e) if stream::is_timeout(&e) => {}
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
                let applied = self.job.cache.apply(&updates, now_ms);
                self.job.status.on_message(now_ms, applied);
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
        self.job.status.on_garbage();
        self.garbage.record(why, sample);
    }

    /// Writes the stream's `/health` record when its health flips, and every
    /// few seconds to refresh the summary.
    fn report_health(&mut self, force: bool) {
        let ok = healthy(
            self.healthy_at.elapsed(),
            self.job.settings.health_grace(),
            self.job.status.state(),
        );
        let due = board_due(force, self.board_ok, ok, self.board_at.map(|t| t.elapsed()));
        if !due {
            return;
        }
        // Before the first data and within the grace, stay "pending".
        let pending = ok && self.job.status.last_message_ms().is_none();
        let summary = format!(
            "{}; {} symbols; {} messages; {} reconnects",
            state_word(self.job.status.state()),
            self.job.cache.funding_len(),
            self.job.status.messages_received(),
            self.job.status.reconnect_attempts()
        );
        let since = self.healthy_at.elapsed().as_secs();
        let last_error = self.job.status.last_error();
        let failures = self.failures_in_a_row.max(1);
        let stopped = self.job.status.state() == StreamState::Stopped;
        self.job.board.update(NAME, |s| {
            s.running = !stopped;
            s.last_run = self
                .job
                .status
                .connected_since_ms()
                .map(crate::clock::from_unix_ms);
            // A run of the stream is a connection, not a frame: frames are
            // `volspike_websocket_messages_total`.
            s.runs = self.job.status.connections();
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
