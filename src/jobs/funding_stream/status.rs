//! The funding stream's counters and state, shared with the HTTP handlers
//! (`/health`, `/metrics`, the funding API and the dashboard): written by the
//! stream thread in [`super`], read anywhere; atomics, so readers never wait.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::iso;

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
    /// The counters, written by the stream thread, read by the handlers.
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

    pub(super) fn set_state(&self, state: StreamState) {
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

    pub(super) fn on_connected(&self, now_ms: u64) {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        self.inner
            .connected_since_ms
            .store(now_ms, Ordering::Relaxed);
        self.inner
            .last_connected_ms
            .store(now_ms, Ordering::Relaxed);
        self.set_state(StreamState::Connected);
    }

    pub(super) fn on_disconnected(&self, why: String) {
        self.inner.connected_since_ms.store(0, Ordering::Relaxed);
        self.set_last_error(Some(why));
    }

    pub(super) fn on_message(&self, now_ms: u64, symbol_updates: usize) {
        self.inner.messages.fetch_add(1, Ordering::Relaxed);
        self.inner
            .symbol_updates
            .fetch_add(symbol_updates as u64, Ordering::Relaxed);
        self.inner.last_message_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Counts one connection attempt after the first.
    pub(super) fn on_reconnect_attempt(&self) {
        self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one unreadable frame.
    pub(super) fn on_garbage(&self) {
        self.inner.garbage.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
