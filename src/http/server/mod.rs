//! The sockets behind the HTTP API: our own accept loop and connection
//! handling, with tiny_http writing the reply heads.
//!
//! Why not tiny_http's own server: its `Server` starts an accept thread that
//! panics on the first failed `accept` (EMFILE) and ends for good, spawns a
//! thread per connection without limit (and panics when it cannot), reads a
//! header line whole whatever its length, and writes with no timeout; none of
//! that is configurable, and it cannot be handed connections accepted
//! elsewhere. So the server owns the listener and every bound:
//!
//! - one runtime thread accepts and drives every connection as a small async
//!   task: a slow client costs a task and its head buffer, not a thread;
//! - at most [`HttpLimits::max_connections`] connections (sized under the
//!   file-descriptor limit); one more evicts the oldest connection waiting on
//!   its client (for a head, or to read a reply; see [`idle`]) or, when every
//!   connection is in a handler, is answered 503 and closed at once;
//! - the head must arrive within [`limits::HEAD_TIMEOUT`] and fit
//!   [`limits::MAX_REQUEST_LINE`] (414) and [`limits::MAX_HEAD`] (431),
//!   checked as bytes arrive; a reply must be written within
//!   [`limits::WRITE_TIMEOUT`];
//! - `workers` handler threads, started once, run the routes; requests wait
//!   in a queue of [`MAX_QUEUED`](limits::MAX_QUEUED) slots, beyond which the
//!   answer is 503 at once;
//! - a failed `accept` (out of descriptors) closes the oldest connection
//!   waiting on its client, backs off and continues.
//!
//! At shutdown the accept loop stops at once and the connections drain:
//! what was accepted is answered (with `Connection: close`), bounded in
//! time; see [`drain`].
//!
//! The accept loop beats the "http" heartbeat itself on every turn (at least
//! once a second): if it stops accepting, the watchdog pings stop.

pub(crate) mod connection;
pub(crate) mod drain;
pub mod first_data;
pub(crate) mod head;
pub(crate) mod idle;
pub mod limits;
pub(crate) mod rate_log;
pub(crate) mod reply_head;

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use connection::{Job, Shared};
use limits::{Event, HttpLimits, HttpStats};
use rate_log::RateLimitedLog;
use reply_head::reply_head;

use super::context::HttpContext;
use super::reply::Reply;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// How long a handler thread waits for a request before checking shutdown.
const POLL: Duration = Duration::from_millis(500);
/// Longest the accept loop waits before beating its heartbeat again.
const BEAT_EVERY: Duration = Duration::from_secs(1);
/// First and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// A bound listener, not yet serving.
pub struct HttpServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    stats: HttpStats,
    /// The listener came from systemd (`volspike.socket`): connections wait
    /// in its backlog until [`HttpServer::spawn`] accepts.
    from_systemd: bool,
}

impl HttpServer {
    /// Binds `addr` and sizes the limits for `workers` handler threads and
    /// the process's file-descriptor limit; failing here is failing before
    /// READY.
    pub fn bind(addr: SocketAddr, workers: usize) -> anyhow::Result<HttpServer> {
        // The socket systemd holds (volspike.socket), or `addr` bound here.
        let (listener, from_systemd) = crate::systemd::listen_fds::http_listener(addr)?;
        // Headers and body go out in two writes; with Nagle on, a body over
        // ~1 KB then waits for the client's delayed ACK (40 ms). Linux
        // copies TCP_NODELAY from the listener to every accepted socket.
        if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on the HTTP listener; larger replies may be delayed");
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| anyhow::anyhow!("cannot serve on {addr} (VOLSPIKE_HTTP_ADDR): {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("listener on {addr} has no address: {e}"))?;
        let limits = HttpLimits::new(workers, nofile_limit());
        Ok(HttpServer {
            listener,
            addr,
            stats: HttpStats::new(limits),
            from_systemd,
        })
    }

    /// Whether the listener is systemd's (socket activation), so that
    /// clients wait in its backlog, not refused, while nothing accepts.
    pub fn from_systemd(&self) -> bool {
        self.from_systemd
    }

    /// Records how long start waited for the first funding data before
    /// serving (0: it did not wait), for `/health`, `/metrics`, the log.
    pub fn set_first_data_wait(&mut self, bound: std::time::Duration) {
        let mut limits = self.stats.limits();
        limits.first_data_wait_seconds = bound.as_secs();
        self.stats = HttpStats::new(limits);
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's limits and counters, for the [`HttpContext`].
    pub fn stats(&self) -> HttpStats {
        self.stats.clone()
    }

    /// Serves until shutdown: one accept thread (beating `heartbeat`) and the
    /// handler threads. Threads are started here, once; failing to start one
    /// is failing before READY.
    pub fn spawn(
        self,
        ctx: HttpContext,
        heartbeat: Heartbeat,
        shutdown: Shutdown,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let limits = self.stats.limits();
        tracing::info!(
            max_connections = limits.max_connections,
            max_request_line_bytes = limits.max_request_line_bytes,
            max_head_bytes = limits.max_head_bytes,
            head_timeout_seconds = limits.head_timeout_seconds,
            write_timeout_seconds = limits.write_timeout_seconds,
            workers = limits.workers,
            max_queued = limits.max_queued,
            "HTTP limits"
        );
        let ctx = Arc::new(ctx);
        let (tx, rx) = mpsc::sync_channel::<Job>(limits.max_queued);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(limits.workers + 1);
        for i in 0..limits.workers {
            let (rx, ctx) = (rx.clone(), ctx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || work(&rx, &ctx))
                    .map_err(|e| anyhow::anyhow!("cannot start an HTTP handler thread: {e}"))?,
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the HTTP runtime: {e}"))?;
        let shared = Arc::new(Shared {
            limits,
            stats: self.stats.clone(),
            idle: idle::IdleSet::default(),
            jobs: tx,
            requests: ctx.requests.clone(),
            busy_log: RateLimitedLog::default(),
            stop: shutdown.clone(),
        });
        let listener = self.listener;
        threads.push(
            std::thread::Builder::new()
                .name("http-accept".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        match tokio::net::TcpListener::from_std(listener) {
                            // Returns at shutdown, dropping our copy of the listener.
                            Ok(listener) => accept_loop(listener, shared.clone(), heartbeat, shutdown).await,
                            Err(e) => tracing::error!(error = %e, "cannot register the HTTP listener; not serving"),
                        }
                        let drained = drain::wait_for_connections(&shared.stats, drain::DRAIN_LIMIT).await;
                        if drained.cut > 0 {
                            tracing::warn!(open_at_stop = drained.open_at_start, cut = drained.cut, limit_seconds = drain::DRAIN_LIMIT.as_secs(), "HTTP connections still open at the drain limit were cut");
                        } else {
                            tracing::info!(open_at_stop = drained.open_at_start, took_ms = drained.took.as_millis() as u64, "HTTP connections drained: each answered what it had sent, with Connection: close");
                        }
                    });
                    // Cuts what outlived the drain; dropping the tasks drops
                    // the handler queue's senders, which ends the handler threads.
                    runtime.shutdown_background();
                })
                .map_err(|e| anyhow::anyhow!("cannot start the HTTP accept thread: {e}"))?,
        );
        Ok(threads)
    }
}

/// Accepts until shutdown, beating `heartbeat` at least every [`BEAT_EVERY`].
async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    heartbeat: Heartbeat,
    mut shutdown: Shutdown,
) {
    let refusal = refusal_bytes();
    let accept_log = RateLimitedLog::default();
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut next_id = 0u64;
    loop {
        heartbeat.beat().await;
        let accepted = tokio::select! {
            // Shutdown first: under a stream of connections, stop accepting
            // at once rather than on a coin toss.
            biased;
            _ = shutdown.wait() => return,
            accepted = listener.accept() => Some(accepted),
            _ = tokio::time::sleep(BEAT_EVERY) => None,
        };
        let stream = match accepted {
            None => continue,
            Some(Ok((stream, _))) => {
                backoff = ACCEPT_BACKOFF.0;
                stream
            }
            Some(Err(e)) => {
                // EMFILE/ENFILE/ENOBUFS: the pending connection stays queued
                // in the kernel; free a descriptor by closing the oldest
                // connection waiting on its client (when out of descriptors),
                // wait a little and accept again.
                shared.stats.count(Event::AcceptError);
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && shared.idle.evict_oldest()
                {
                    tokio::task::yield_now().await;
                }
                accept_log.warn(|since| {
                    tracing::warn!(error = %e, failures = since, backoff_ms = backoff.as_millis() as u64, "HTTP accept failed; backing off and accepting again")
                });
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        shared.stats.count(Event::Accepted);
        if shared.stats.open() >= shared.limits.max_connections {
            // Connections accepted in this burst register as waiting once
            // their task first runs: give them that turn before deciding
            // that none can be evicted.
            let mut evicted = shared.idle.evict_oldest();
            if !evicted {
                tokio::task::yield_now().await;
                evicted = shared.idle.evict_oldest();
            }
            if !evicted {
                // Every slot is busy with a request: a cheap 503, never a wait.
                shared.stats.count(Event::Refused);
                shared.requests.record("other", 503);
                let _ = stream.try_write(&refusal);
                continue;
            }
            // Let the evicted connection close before the next accept, so a
            // burst cannot push the count far past the cap.
            tokio::task::yield_now().await;
        }
        next_id += 1;
        let open = shared.stats.open_guard();
        tokio::spawn(connection::serve(stream, next_id, shared.clone(), open));
    }
}

/// One handler thread: takes queued requests, routes, sends the reply back.
/// It keeps serving while the connections drain at shutdown and ends when
/// the last sender is gone (the accept thread's runtime has ended).
fn work(rx: &Mutex<Receiver<Job>>, ctx: &HttpContext) {
    loop {
        let next = {
            let rx = match rx.lock() {
                Ok(rx) => rx,
                Err(poisoned) => poisoned.into_inner(),
            };
            rx.recv_timeout(POLL)
        };
        let job = match next {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // The connection may be gone meanwhile; then nobody needs the reply.
        let _ = job
            .reply
            .send(super::router::route(ctx, &job.method, &job.target));
    }
}

/// The whole 503 sent to a connection refused at the cap.
fn refusal_bytes() -> Vec<u8> {
    let reply = Reply::error(503, "server busy: too many connections");
    let mut bytes = reply_head(&reply, (1, 1), true);
    bytes.extend_from_slice(&reply.body);
    bytes
}

/// The soft `RLIMIT_NOFILE`, or systemd's default 1024 when unknown.
fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_503() {
        let refusal = String::from_utf8(refusal_bytes()).expect("ASCII");
        assert!(refusal.starts_with("HTTP/1.1 503 ") && refusal.ends_with('}'));
    }
}
